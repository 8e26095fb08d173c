package report

import (
	"strings"
	"testing"

	"github.com/peerlink/peerlink/simulation"
)

// workloadResult is fakeResult with a workload's measures.
func workloadResult() *simulation.Result {
	res := fakeResult()
	res.Gossip = &simulation.GossipResult{
		Published: 12, Counted: 10, Complete: 9, Delivery: 0.9,
		To99:              simulation.Summary{Count: 9, P50: sec(0.12), P90: sec(0.15), Max: sec(0.2)},
		DuplicatesPerNode: 5.9, DuplicatesTheory: 2.5, LastHopMean: 3.5, LastHopMax: 5,
		DelayCDF: []simulation.CDFPoint{{At: sec(0.05), Share: 0.2}, {At: sec(0.1), Share: 0.7}, {At: sec(0.2), Share: 1}},
	}
	for i := range 10 {
		m := simulation.MessageStat{ID: uint64(i), To50: sec(0.05), To90: sec(0.1), Complete: i != 3}
		if m.Complete {
			m.To100 = sec(0.15)
		}
		res.Gossip.Messages = append(res.Gossip.Messages, m)
	}
	res.Requests = &simulation.RequestResult{Sent: 100, OK: 97, Errors: map[string]int{"timeout": 2, "no_candidate": 1},
		Latency: simulation.Summary{Count: 97, P50: sec(0.06), P90: sec(0.1), Max: sec(0.3)}}
	res.Selection = []simulation.SelectionQuality{
		{Strategy: "p2c", Picks: 33, BestShare: 0.3, MeanRegret: 1.2, P90Regret: 1.8},
		{Strategy: "highest_score", Picks: 33, BestShare: 0.85, MeanRegret: 1.03, P90Regret: 1.1},
		{Strategy: "random", Picks: 31, BestShare: 0.18, MeanRegret: 1.5, P90Regret: 2.5, Errors: 3},
	}
	res.Scores = []simulation.ScorePoint{
		{Node: 0, Peer: 1, Score: 0.9, True: sec(0.04)},
		{Node: 0, Peer: 2, Score: 0.4, True: sec(0.4), Degraded: true},
	}
	for i := range 6 {
		res.WorkloadSamples = append(res.WorkloadSamples, simulation.WorkloadSample{At: sec(float64(10 * i)), Published: 2, Delivery: 1, Requests: 16, RequestErrors: i % 2})
	}
	return res
}

// A workload run's report has its sections, charts and series, and its
// figures in the summary.
func TestReportOfWorkload(t *testing.T) {
	page := render(t, workloadResult())
	titles := chartTitles(t, page)
	all := svgs(t, page)
	for _, w := range []struct {
		title  string
		series []string
	}{
		{"Propagation delay (CDF)", []string{"first copy, every node reached"}},
		{"Time to reach 50, 90, 100 % of the nodes (CDF)", []string{"50 %", "90 %", "100 %"}},
		{"Delivery and request failures over time", []string{"gossip delivered (%)", "requests failed (%)"}},
		{"Best picks by strategy", []string{"best pick (%)"}},
		{"Mean regret by strategy", []string{"mean regret (× best latency)"}},
		{"Score against true latency", []string{"healthy", "degraded (slowed link or slow server)"}},
	} {
		k := -1
		for i, title := range titles {
			if title == w.title {
				k = i
			}
		}
		if k < 0 {
			t.Errorf("no chart %q among %q", w.title, titles)
			continue
		}
		for _, s := range w.series {
			if !strings.Contains(all[k], `data-series="`+esc(s)+`"`) {
				t.Errorf("chart %q has no series %q", w.title, s)
			}
		}
	}
	for _, want := range []string{
		"<h2>Gossip propagation</h2>", "<h2>Selection quality</h2>", "<h2>Quality scores against true link quality</h2>",
		"<td>gossip delivery</td><td>9 of 10 messages reached their whole component (90.0 %)</td>",
		"<td>requests</td><td>97 of 100 answered; latency 97: p50 60ms, p90 100ms, max 300ms; errors no_candidate 1, timeout 2</td>",
		"<td>selection: highest_score</td><td>best pick 85 % of 33, mean regret 1.03 (p90 1.10), 0 errors</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// A run without a workload has none of these sections.
	if plain := render(t, fakeResult()); strings.Contains(plain, "Gossip propagation") || strings.Contains(plain, "Selection quality") {
		t.Error("a run without a workload has workload sections")
	}
}
