package simulation

import (
	"testing"
	"time"
)

// checkWorkload asserts what each shipped scenario's workload is there
// to show.
func checkWorkload(t *testing.T, sc Scenario, res *Result) {
	t.Helper()
	if g := res.Gossip; g != nil {
		t.Logf("gossip: %d published, %d counted, delivery %.4f; to 99 %% %+v; to 100 %% %+v; duplicates/node %.2f (theory (k−2)/2 = %.1f), RMR %.2f, last hop %.1f (max %d)",
			g.Published, g.Counted, g.Delivery, g.To99, g.To100, g.DuplicatesPerNode, g.DuplicatesTheory, g.RMR, g.LastHopMean, g.LastHopMax)
		if g.Counted == 0 {
			t.Fatal("no gossip message counted")
		}
	}
	if r := res.Requests; r != nil {
		t.Logf("requests: %d sent, %d ok, errors %v, latency %+v", r.Sent, r.OK, r.Errors, r.Latency)
		for _, q := range res.Selection {
			t.Logf("  %s: %d picks, best %.3f, regret mean %.3f p90 %.3f, %d errors, p50 %v", q.Strategy, q.Picks, q.BestShare, q.MeanRegret, q.P90Regret, q.Errors, q.Latency.P50)
		}
	}
	t.Logf("breaker openings %d, trims %d (squatters' %d)", res.BreakerOpenings, res.Trims, res.TrimmedSquatters)
	switch sc.Name {
	case "baseline":
		// No fault: every message reaches every node.
		if g := res.Gossip; g.Delivery != 1 || g.To100.Count != g.Counted {
			t.Fatalf("delivery %v (%d of %d complete), want every message everywhere", g.Delivery, g.Complete, g.Counted)
		}
		if r := res.Requests; r.OK != r.Sent {
			t.Fatalf("%d of %d requests failed: %v", r.Sent-r.OK, r.Sent, r.Errors)
		}
	case "churn":
		// Churned nodes are not counted against a message, but a node
		// that crashes with a copy it has not yet forwarded takes it
		// with it (gossip does not retransmit): most messages still
		// reach every node linked when they were published.
		if g := res.Gossip; g.Delivery < 0.9 {
			t.Fatalf("delivery %v under churn", g.Delivery)
		}
	case "partition-and-heal":
		// Within each side every message spreads, but for those published
		// just before the cut (the cut links look up until the health
		// checks find them dead).
		p := sc.Faults[0]
		from, to := p.At.D()-5*time.Second, p.At.D()+sc.Health.config().DetectionBound()
		for _, m := range res.Gossip.Messages {
			if !m.Complete && (m.At.D() < from || m.At.D() > to) {
				t.Fatalf("message %+v incomplete", m)
			}
		}
	case "degraded-peers":
		var p2c, random SelectionQuality
		for _, q := range res.Selection {
			switch q.Strategy {
			case StrategyP2C:
				p2c = q
			case StrategyRandom:
				random = q
			}
		}
		if p2c.Picks < 100 || random.Picks < 100 || p2c.MeanRegret >= random.MeanRegret {
			t.Fatalf("P2C %+v, random %+v: want P2C's regret below random's", p2c, random)
		}
		var deg, ok []float64
		for _, s := range res.Scores {
			if s.Degraded {
				deg = append(deg, s.Score)
			} else {
				ok = append(ok, s.Score)
			}
		}
		if len(deg) == 0 || len(ok) == 0 || mean(deg) >= mean(ok) {
			t.Fatalf("mean score of %d degraded peers %.3f, of %d healthy %.3f: want lower", len(deg), mean(deg), len(ok), mean(ok))
		}
		t.Logf("mean score: degraded %.3f (%d), healthy %.3f (%d)", mean(deg), len(deg), mean(ok), len(ok))
	case "heavy-load":
		checkHeavyLoad(t, res)
	case "stream-flood":
		f := res.Flood
		t.Logf("flood %+v", *f)
		if f.Opened <= int64(f.VictimLimit) || f.VictimLimit == 0 {
			t.Fatalf("flood %+v: the attacker never reached a victim's limit", *f)
		}
		if f.VictimMaxStreams > f.VictimLimit {
			t.Fatalf("flood %+v: a victim held more streams than its limit", *f)
		}
		if f.VictimRequests < 50 || float64(f.VictimRequestsOK) < 0.99*float64(f.VictimRequests) {
			t.Fatalf("flood %+v: victims stopped serving", *f)
		}
	case "bulk-plus-gossip":
		b, g := res.Bulk, res.Gossip
		t.Logf("bulk %+v", *b)
		if b.Transfers == 0 || b.Failed != 0 {
			t.Fatalf("bulk %+v", *b)
		}
		if g.Delivery != 1 || g.To100.Max.D() > 500*time.Millisecond {
			t.Fatalf("gossip beside bulk: delivery %v, to 100 %% %+v", g.Delivery, g.To100)
		}
	case "squatters":
		// The squatters are trimmed, over and over as they come back;
		// an honest link hardly ever.
		if res.TrimmedSquatters < 20 || res.Trims-res.TrimmedSquatters > res.Trims/20 {
			t.Fatalf("%d trims, %d of squatters: want the squatters trimmed, not the honest", res.Trims, res.TrimmedSquatters)
		}
	}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
