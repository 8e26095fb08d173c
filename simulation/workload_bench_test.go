package simulation

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkWorkload runs workload scenarios in a child process of the
// test binary (a benchmark cannot host a synctest bubble; see
// BenchmarkScale) and reports their measures:
//
//   - default: Default(), cmd/peersim's run with no flags: its wall time;
//   - propagation: gossip alone over N nodes of degree 8 (fanout 7: every
//     neighbour but the sender), N from PEERLINK_SIM_PROPAGATION_SIZES
//     (default 1000), about PEERLINK_SIM_PROPAGATION_MESSAGES messages
//     (100): time to 99 % and duplicates per node against (k−2)/2; with
//     PEERLINK_SIM_PROPAGATION_VALIDATION (comma-separated Go durations,
//     e.g. 0,10ms,50ms) once per GossipSpec.Validation;
//   - degraded-peers: the shipped scenario at 100 nodes: each strategy's
//     share of best picks and mean regret;
//   - heavy-load: the shipped scenario at 100 nodes (10 degraded, 10
//     slow), the three strategies rotated, then heavy-load=STRATEGY with
//     that strategy alone (no other one's queues in its way): each
//     strategy's picks as above, its latency p50/p90/p99, errors per
//     1,000 requests and its busiest server's picks ÷ the mean.
//
// PEERLINK_SIM_P2C_CHOICES sets RequestSpec.P2CChoices in degraded-peers
// and heavy-load (P2C's candidates per pick; 2 if unset), to compare
// power of d choices with classic P2C under light and heavy load.
func BenchmarkWorkload(b *testing.B) {
	sizes := "1000"
	if s := os.Getenv("PEERLINK_SIM_PROPAGATION_SIZES"); s != "" {
		sizes = s
	}
	runs := []string{"default", "degraded-peers", "heavy-load"}
	for _, s := range []string{StrategyP2C, StrategyHighestScore, StrategyRandom} {
		runs = append(runs, "heavy-load:"+s)
	}
	for _, s := range strings.Split(sizes, ",") {
		vs := os.Getenv("PEERLINK_SIM_PROPAGATION_VALIDATION")
		if vs == "" {
			runs = append(runs, "propagation:"+strings.TrimSpace(s))
			continue
		}
		for _, v := range strings.Split(vs, ",") {
			runs = append(runs, "propagation:"+strings.TrimSpace(s)+":"+strings.TrimSpace(v))
		}
	}
	for _, name := range runs {
		b.Run(strings.ReplaceAll(name, ":", "="), func(b *testing.B) {
			var f workloadFigures
			for b.Loop() {
				f = runWorkloadChild(b, name)
			}
			b.ReportMetric(f.Wall, "wall-s")
			reportGossip(b, f.Gossip)
			for _, q := range f.Selection {
				b.ReportMetric(q.BestShare, q.Strategy+"-best")
				b.ReportMetric(q.MeanRegret, q.Strategy+"-regret")
				if strings.HasPrefix(name, "heavy-load") {
					reportLoad(b, q)
				}
			}
			b.Logf("%s: %s", name, f.Summary)
		})
	}
}

const (
	workloadEnv    = "PEERLINK_SIM_WORKLOAD"
	workloadPrefix = "SIMWORKLOAD "
)

type workloadFigures struct {
	Wall      float64            `json:"wall_s"`
	Gossip    *GossipResult      `json:"gossip"`
	Selection []SelectionQuality `json:"selection"`
	Summary   string             `json:"summary"`
}

// workloadScenario returns the scenario a BenchmarkWorkload run names.
func workloadScenario(name string) (Scenario, error) {
	kind, arg, _ := strings.Cut(name, ":")
	switch kind {
	case "default":
		return Default(), nil
	case "degraded-peers":
		sc := DegradedPeers()
		sc.Nodes = 100
		sc.Workload.Requests.Rate = 1
		sc.Workload.Requests.P2CChoices = benchChoices()
		return sc, nil
	case "heavy-load":
		sc := HeavyLoad()
		sc.Nodes, sc.Degree, sc.Duration = 100, 6, Duration(20*time.Second)
		sc.Faults[0].Nodes = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		r := sc.Workload.Requests
		r.SlowNodes = []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
		if arg != "" {
			r.Strategies = []string{arg}
		}
		r.P2CChoices = benchChoices()
		return sc, nil
	case "propagation":
		arg, val, _ := strings.Cut(arg, ":")
		n, err := strconv.Atoi(arg)
		if err != nil {
			return Scenario{}, err
		}
		var validation time.Duration
		if val != "" {
			if validation, err = time.ParseDuration(val); err != nil {
				return Scenario{}, err
			}
		}
		msgs := 100.0
		if v, err := strconv.ParseFloat(os.Getenv("PEERLINK_SIM_PROPAGATION_MESSAGES"), 64); err == nil && v > 0 {
			msgs = v
		}
		sc := scaleScenario(n)
		sc.Name, sc.Duration = "propagation", Duration(30*time.Second)
		// About msgs messages, whatever the size: publishing runs from
		// 2 s to 25 s.
		sc.Workload = &WorkloadSpec{Gossip: &GossipSpec{Rate: msgs / (float64(n) * 23), Validation: Duration(validation)}}
		return sc, nil
	}
	return Scenario{}, fmt.Errorf("unknown workload run %q", name)
}

// TestWorkloadChild runs the scenario BenchmarkWorkload names in the
// environment; otherwise it is skipped.
func TestWorkloadChild(t *testing.T) {
	name := os.Getenv(workloadEnv)
	if name == "" {
		t.Skip("run by BenchmarkWorkload")
	}
	sc, err := workloadScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now() // outside the bubble: the real clock
	var res *Result
	inBubble(t, func(t *testing.T) {
		var err error
		if res, err = Run(t.Context(), sc, bubbleOpts()); err != nil {
			t.Fatal(err)
		}
	})
	f := workloadFigures{Wall: time.Since(start).Seconds(), Gossip: res.Gossip, Selection: res.Selection}
	if f.Gossip != nil {
		f.Gossip.Messages, f.Gossip.DelayCDF = nil, nil
	}
	f.Summary = fmt.Sprintf("%d nodes, %v virtual, %d crashes, trace %s, heap/node %d B, goroutines/node %.1f, CPU/node %v",
		res.Nodes, res.Duration, res.Crashes, res.TraceHash, res.HeapPerNode, res.GoroutinesPerNode, res.CPUPerNode)
	if r := res.Requests; r != nil {
		f.Summary += fmt.Sprintf("; requests %d sent, %d ok, %v, latency %+v", r.Sent, r.OK, r.Errors, r.Latency)
	}
	if g := res.Gossip; g != nil {
		f.Summary += fmt.Sprintf("; gossip %d counted, delivery %.4f, to99 %+v, dups/node %.2f, RMR %.2f, send errors %d", g.Counted, g.Delivery, g.To99, g.DuplicatesPerNode, g.RMR, g.SendErrors)
	}
	b, _ := json.Marshal(f)
	fmt.Println(workloadPrefix + string(b))
}

func runWorkloadChild(b *testing.B, name string) workloadFigures {
	var f workloadFigures
	runChild(b, "TestWorkloadChild", workloadEnv+"="+name, workloadPrefix, &f)
	return f
}

// reportLoad reports what users of one strategy feel under load.
func reportLoad(b *testing.B, q SelectionQuality) {
	ms := func(d Duration) float64 { return float64(d.D()) / float64(time.Millisecond) }
	b.ReportMetric(ms(q.Latency.P50), q.Strategy+"-p50-ms")
	b.ReportMetric(ms(q.Latency.P90), q.Strategy+"-p90-ms")
	b.ReportMetric(ms(q.Latency.P99), q.Strategy+"-p99-ms")
	if n := q.Latency.Count + q.Errors; n > 0 {
		b.ReportMetric(1000*float64(q.Errors)/float64(n), q.Strategy+"-err/1k")
	}
	b.ReportMetric(q.LoadMaxMean, q.Strategy+"-busiest/mean")
}

// benchChoices is PEERLINK_SIM_P2C_CHOICES, 0 if unset.
func benchChoices() int {
	d, _ := strconv.Atoi(os.Getenv("PEERLINK_SIM_P2C_CHOICES"))
	return d
}
