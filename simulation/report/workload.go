package report

import (
	"fmt"
	"slices"

	"github.com/peerlink/peerlink/simulation"
)

// The workload's sections: gossip propagation, the workload over time,
// scores against the links' true latency, and the request strategies'
// selection quality. Each is absent when the run had no such workload.

// workloadRows are the summary's rows for the workload.
func workloadRows(res *simulation.Result, add func(k, format string, a ...any)) {
	if g := res.Gossip; g != nil {
		add("gossip delivery", "%d of %d messages reached their whole component (%.1f %%)", g.Complete, g.Counted, 100*g.Delivery)
		add("gossip time to 99 %", "%s", summary(g.To99))
		add("gossip duplicates", "%.2f per node per message (flooding theory (k−2)/2: %.2f); last hop %.1f mean, %d max",
			g.DuplicatesPerNode, g.DuplicatesTheory, g.LastHopMean, g.LastHopMax)
	}
	if r := res.Requests; r != nil {
		add("requests", "%d of %d answered; latency %s; errors %s", r.OK, r.Sent, summary(r.Latency), errorCounts(r.Errors))
	}
	for _, q := range res.Selection {
		if q.Picks == 0 {
			// No pick judged: on a real network no true latency is known.
			add("selection: "+q.Strategy, "best pick and regret not measured (no true latency known)")
			continue
		}
		add("selection: "+q.Strategy, "best pick %.0f %% of %d, mean regret %.2f (p90 %.2f), %d errors",
			100*q.BestShare, q.Picks, q.MeanRegret, q.P90Regret, q.Errors)
	}
	// What the strategy's users felt, which under load (servers of
	// finite capacity) is where the strategies part.
	for _, q := range res.Selection {
		if q.Latency.Count > 0 {
			add("requests: "+q.Strategy, "latency p50 %s, p90 %s, p99 %s; errors %s; busiest server %.1f %% of picks (%.2f× the mean)",
				dur(q.Latency.P50), dur(q.Latency.P90), dur(q.Latency.P99), errorCounts(q.ErrorCauses), 100*q.BusiestShare, q.LoadMaxMean)
		}
	}
}

// errorCounts prints errors by cause, in cause order.
func errorCounts(errs map[string]int) string {
	if len(errs) == 0 {
		return "none"
	}
	causes := make([]string, 0, len(errs))
	for c := range errs {
		causes = append(causes, c)
	}
	slices.Sort(causes)
	out := ""
	for i, c := range causes {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %d", c, errs[c])
	}
	return out
}

func gossipSection(res *simulation.Result) (Section, bool) {
	g := res.Gossip
	if g == nil {
		return Section{}, false
	}
	s := Section{
		ID:    "gossip",
		Title: "Gossip propagation",
		Text: []string{
			fmt.Sprintf("%d messages published, %d counted (published early enough to spread), %.1f %% delivered to every node of their connected component.",
				g.Published, g.Counted, 100*g.Delivery),
			"Each node forwards a message it has not seen to the peers its balancer picks and drops duplicates by message ID.",
		},
	}
	delay := Series{Name: "first copy, every node reached"}
	for _, p := range g.DelayCDF {
		delay.Points = append(delay.Points, Point{X: p.At.D().Seconds(), Y: p.Share})
	}
	s.Charts = append(s.Charts, &LineChart{Title: "Propagation delay (CDF)", XLabel: "seconds after publication", YLabel: "share of deliveries", Series: []Series{delay}, Step: true})
	if len(g.Messages) > 0 {
		var to50, to90, to100 []float64
		for _, m := range g.Messages {
			for _, p := range []struct {
				d   simulation.Duration
				out *[]float64
			}{{m.To50, &to50}, {m.To90, &to90}, {m.To100, &to100}} {
				if p.d > 0 {
					*p.out = append(*p.out, p.d.D().Seconds())
				}
			}
		}
		s.Charts = append(s.Charts, CDF("Time to reach 50, 90, 100 % of the nodes (CDF)", "seconds after publication",
			Samples{Name: "50 %", Values: to50}, Samples{Name: "90 %", Values: to90}, Samples{Name: "100 %", Values: to100}))
	}
	return s, true
}

func workloadOverTimeSection(res *simulation.Result) (Section, bool) {
	if len(res.WorkloadSamples) == 0 {
		return Section{}, false
	}
	delivery := Series{Name: "gossip delivered (%)"}
	errs := Series{Name: "requests failed (%)"}
	for _, w := range res.WorkloadSamples {
		x := w.At.D().Seconds()
		if w.Delivery >= 0 {
			delivery.Points = append(delivery.Points, Point{X: x, Y: 100 * w.Delivery})
		}
		if w.Requests > 0 {
			errs.Points = append(errs.Points, Point{X: x, Y: 100 * float64(w.RequestErrors) / float64(w.Requests)})
		}
	}
	return Section{
		ID:    "workload",
		Title: "Delivery and request failures over time",
		Text:  []string{"Per sample interval: the share of the gossip messages published in it that reached their whole component, and the share of requests that failed."},
		Charts: []Chart{&LineChart{Title: "Delivery and request failures over time", XLabel: "virtual time (s)", YLabel: "%",
			Series: []Series{delivery, errs}, Marks: faultMarks(res)}},
	}, true
}

func scoresSection(res *simulation.Result) (Section, bool) {
	if len(res.Scores) == 0 {
		return Section{}, false
	}
	healthy, degraded := Series{Name: "healthy"}, Series{Name: "degraded (slowed link or slow server)"}
	for _, p := range res.Scores {
		pt := Point{X: p.True.D().Seconds() * 1000, Y: p.Score}
		if p.Degraded {
			degraded.Points = append(degraded.Points, pt)
		} else {
			healthy.Points = append(healthy.Points, pt)
		}
	}
	return Section{
		ID:    "scores",
		Title: "Quality scores against true link quality",
		Text:  []string{"Each node's quality score of each linked peer at the end of the run, against the true latency the harness knows (the link's round trip plus the peer's service time)."},
		Charts: []Chart{&Scatter{Title: "Score against true latency", XLabel: "true latency (ms)", YLabel: "quality score",
			Series: []Series{healthy, degraded}}},
	}, true
}

func selectionSection(res *simulation.Result) (Section, bool) {
	if len(res.Selection) == 0 {
		return Section{}, false
	}
	groups := make([]string, len(res.Selection))
	best, regret := BarSeries{Name: "best pick (%)"}, BarSeries{Name: "mean regret (× best latency)"}
	t := Table{Caption: "Selection quality by strategy (requests rotate the strategies on one run)",
		Header: []string{"strategy", "picks judged", "best pick", "mean regret", "p90 regret", "errors", "latency", "busiest server"}}
	p50, p90, p99 := BarSeries{Name: "p50"}, BarSeries{Name: "p90"}, BarSeries{Name: "p99"}
	latencies, judged := false, false
	for i, q := range res.Selection {
		groups[i] = q.Strategy
		best.Values = append(best.Values, 100*q.BestShare)
		regret.Values = append(regret.Values, q.MeanRegret)
		bestCell, meanCell, p90Cell := fmt.Sprintf("%.1f %%", 100*q.BestShare), fmt.Sprintf("%.2f", q.MeanRegret), fmt.Sprintf("%.2f", q.P90Regret)
		if q.Picks == 0 {
			bestCell, meanCell, p90Cell = "not measured", "not measured", "not measured"
		} else {
			judged = true
		}
		t.Rows = append(t.Rows, []string{q.Strategy, fmt.Sprint(q.Picks), bestCell, meanCell, p90Cell, fmt.Sprint(q.Errors), summary(q.Latency),
			fmt.Sprintf("%.1f %% of picks, %.2f× the mean", 100*q.BusiestShare, q.LoadMaxMean)})
		ms := func(d simulation.Duration) float64 { return d.D().Seconds() * 1000 }
		p50.Values = append(p50.Values, ms(q.Latency.P50))
		p90.Values = append(p90.Values, ms(q.Latency.P90))
		p99.Values = append(p99.Values, ms(q.Latency.P99))
		latencies = latencies || q.Latency.Count > 0
	}
	s := Section{ID: "selection", Title: "Selection quality", Tables: []Table{t}}
	if judged {
		s.Text = []string{"How often SelectBest picked the truly best peer among the candidates, and the regret: the picked peer's true latency over the best's (1 is perfect)."}
		s.Charts = []Chart{
			&Bars{Title: "Best picks by strategy", YLabel: "% of picks", Groups: groups, Series: []BarSeries{best}},
			&Bars{Title: "Mean regret by strategy", YLabel: "× the best peer's latency", Groups: groups, Series: []BarSeries{regret}},
		}
	} else {
		s.Text = []string{"No pick could be judged: no true latency is known (a real network), so best picks and regret are not measured. The strategies' errors and latencies are real."}
	}
	if latencies {
		// Regret judges a pick by the link alone; when servers queue
		// (RequestSpec.Concurrency), what a strategy's users wait is
		// its latency, errors aside.
		s.Text = append(s.Text, "Request latency by strategy is over the successful requests: read it with the errors. The strategies share the servers, so each one's latency includes the queues the others build.")
		s.Charts = append(s.Charts, &Bars{Title: "Request latency by strategy", YLabel: "ms", Groups: groups, Series: []BarSeries{p50, p90, p99}})
	}
	return s, true
}
