package simulation

import (
	"testing"
	"time"
)

func gossipBaseline(n int) Scenario {
	sc := baseline(n)
	sc.Name = "gossip"
	sc.Degree = 6
	sc.Duration = Duration(20 * time.Second)
	sc.Workload = &WorkloadSpec{
		Gossip:   &GossipSpec{Rate: 0.2},
		Requests: &RequestSpec{Rate: 2},
	}
	return sc
}

func TestWorkloadGossipBaseline(t *testing.T) {
	sc := gossipBaseline(30)
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		g := res.Gossip
		t.Logf("gossip: published %d counted %d complete %d delivery %.3f to99 %+v dups %.2f (theory %.1f) rmr %.2f lasthop %.1f/%d",
			g.Published, g.Counted, g.Complete, g.Delivery, g.To99, g.DuplicatesPerNode, g.DuplicatesTheory, g.RMR, g.LastHopMean, g.LastHopMax)
		t.Logf("requests %+v", *res.Requests)
		for _, q := range res.Selection {
			t.Logf("selection %+v", q)
		}
	})
}
