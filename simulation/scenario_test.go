package simulation

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeScenario(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"nodes": 10, "duration": "1m30s", "seed": 7,
		"link": {"latency": "40ms", "spread": "10ms", "bandwidth": 1000000},
		"faults": [{"kind": "crash", "at": "10s", "for": "5s", "nodes": [3]},
		           {"kind": "partition", "at": 20000000000, "groups": [[0, 1]]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Scenario{
		Nodes: 10, Topology: TopologyRandomRegular, Degree: DefaultDegree, Duration: Duration(90 * time.Second), Seed: 7,
		Link:        LinkSpec{Latency: Duration(40 * time.Millisecond), Spread: Duration(10 * time.Millisecond), Bandwidth: 1e6},
		SampleEvery: Duration(time.Second),
		Faults: []Fault{
			{Kind: FaultCrash, At: Duration(10 * time.Second), For: Duration(5 * time.Second), Nodes: []int{3}},
			{Kind: FaultPartition, At: Duration(20 * time.Second), Groups: [][]int{{0, 1}}},
		},
	}
	if !reflect.DeepEqual(sc, want) {
		t.Fatalf("decoded %+v\nwant    %+v", sc, want)
	}
}

// Bad input is refused with an error naming the field.
func TestScenarioValidate(t *testing.T) {
	for _, tc := range []struct{ json, field string }{
		{`{"nodes": 1, "duration": "1s"}`, "Nodes"},
		{`{"nodes": 10}`, "Duration"},
		{`{"nodes": 10, "duration": "-1s"}`, "Duration"},
		{`{"nodes": 10, "duration": "1s", "topology": "ring"}`, "Topology"},
		{`{"nodes": 10, "duration": "1s", "rewire": 2}`, "Rewire"},
		{`{"nodes": 10, "duration": "1s", "link": {"latency": "-5ms"}}`, "Latency"},
		{`{"nodes": 10, "duration": "1s", "link": {"latency": "5ms", "jitter": "6ms"}}`, "Jitter"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "meteor"}]}`, "Kind"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "reset", "nodes": [1, 1]}]}`, "Faults[0].Nodes"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "crash", "nodes": [10]}]}`, "Faults[0].Nodes has node 10, out of range"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "churn", "for": "1s", "down": "1s"}]}`, "Rate"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "partition", "groups": [[1], [1]]}]}`, "two groups"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "degrade", "nodes": [1, 2]}]}`, "Link"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "heal", "at": "-1s"}]}`, "At"},
		{`{"nodes": 10, "duration": "1s", "colour": "blue"}`, "colour"},
		{`{"nodes": 10, "duration": "fast"}`, "fast"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "poweroff"}]}`, "Faults[0].Nodes is empty"},
		{`{"nodes": 100000000, "duration": "1s"}`, "Nodes"},
		{`{"nodes": 10, "duration": "1s", "faults": [{"kind": "churn", "rate": 1e9, "for": "1h", "down": "1s"}]}`, "Faults[0].Rate"},
	} {
		_, err := ParseScenario([]byte(tc.json))
		if !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v; want ErrScenario naming %s", tc.json, err, tc.field)
		}
	}
	// The topology's own limits surface from Start.
	if _, err := Start(Scenario{Nodes: 5, Degree: 3, Duration: Duration(time.Second)}, Options{}); !errors.Is(err, ErrTopology) {
		t.Errorf("5 nodes of degree 3: %v, want ErrTopology", err)
	}
}

func TestScheduleChurn(t *testing.T) {
	sc := Scenario{Nodes: 20, Duration: Duration(time.Hour), Seed: 5, Faults: []Fault{
		{Kind: FaultCrash, At: 0, Nodes: []int{0, 1}}, // down for good: never churned
		{Kind: FaultChurn, At: Duration(time.Minute), For: Duration(10 * time.Minute), Rate: 1, Down: Duration(3 * time.Second)},
	}}
	acts := sc.schedule()
	if !reflect.DeepEqual(acts, sc.schedule()) {
		t.Fatal("one seed, two schedules")
	}
	crashes := 0
	downUntil := map[int]time.Duration{}
	for k, a := range acts {
		if k > 0 && a.at < acts[k-1].at {
			t.Fatalf("schedule out of order at %d", k)
		}
		if a.cause != FaultChurn {
			continue
		}
		i := a.nodes[0]
		if i < 2 {
			t.Fatalf("churn chose node %d, which is down", i)
		}
		switch a.kind {
		case FaultCrash:
			crashes++
			if a.at < time.Minute || a.at >= 11*time.Minute {
				t.Fatalf("churn crash at %v, outside its window", a.at)
			}
			if a.at < downUntil[i] {
				t.Fatalf("node %d crashed at %v while down until %v", i, a.at, downUntil[i])
			}
			downUntil[i] = a.at + 3*time.Second
		case FaultRestart:
			if a.at != downUntil[i] {
				t.Fatalf("node %d restarts at %v, want %v", i, a.at, downUntil[i])
			}
		}
	}
	// A Poisson process at 1/s for 600 s: 600 ± 3σ (σ ≈ 24.5).
	if crashes < 526 || crashes > 674 {
		t.Fatalf("%d churn crashes in 600 s at rate 1/s", crashes)
	}
	other := sc
	other.Seed = 6
	if reflect.DeepEqual(acts, other.schedule()) {
		t.Fatal("two seeds, one schedule")
	}
}

// shipped decodes every scenario in scenarios/, by file name.
func shipped(t *testing.T) map[string]Scenario {
	t.Helper()
	files, err := filepath.Glob("scenarios/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	scs := make(map[string]Scenario)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ParseScenario(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		scs[f] = sc
	}
	return scs
}

func TestShippedScenariosDecode(t *testing.T) {
	for f, sc := range shipped(t) {
		if _, err := sc.Graph(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); sc.Name != want {
			t.Errorf("%s is named %q", f, sc.Name)
		}
	}
}

// TestShippedScenarios runs every scenario in scenarios/ in a bubble and
// checks what holds for all of them: every edge up before the first
// fault and again at the end, every silenced link found dead within the
// health monitor's bound, every link the faults took back; then what its
// workload is there to show (checkWorkload). It runs each twice: one
// seed must give one trace hash (churn, black holes, trims and the
// workloads included).
func TestShippedScenarios(t *testing.T) {
	for _, sc := range shipped(t) {
		t.Run(sc.Name, func(t *testing.T) {
			firstFault := sc.Duration.D()
			for _, f := range sc.Faults {
				firstFault = min(firstFault, f.At.D())
			}
			var hashes []string
			inBubble(t, func(t *testing.T) {
				res, err := Run(t.Context(), sc, bubbleOpts())
				if err != nil {
					t.Fatal(err)
				}
				hashes = append(hashes, res.TraceHash)
				t.Logf("%s: %d nodes, %d edges, fully connected at %v, trace %s (%d records), %d crashes; reconnect after restart %+v, after heal %+v; detection %+v; heap/node %d B, goroutines/node %.1f",
					sc.Name, res.Nodes, res.Edges, res.FullyConnectedAt, res.TraceHash, res.TraceLen, res.Crashes,
					res.ReconnectAfterRestart, res.ReconnectAfterHeal, res.DeadLinkDetection, res.HeapPerNode, res.GoroutinesPerNode)
				if res.DroppedEvents != 0 {
					t.Fatalf("%d events dropped", res.DroppedEvents)
				}
				if !res.FullyConnected || res.FullyConnectedAt.D() >= firstFault {
					t.Fatalf("fully connected %v at %v; first fault at %v", res.FullyConnected, res.FullyConnectedAt, firstFault)
				}
				// (Where nodes trim, an edge trimmed may be waiting for its
				// redial at the end.)
				if last := res.Samples[len(res.Samples)-1]; last.NodesUp != res.Nodes || (last.EdgesUp != res.Edges && (sc.Workload == nil || sc.Workload.Trim == nil)) {
					t.Fatalf("at the end: %+v, want all %d nodes and %d edges up", last, res.Nodes, res.Edges)
				}
				for _, s := range []Summary{res.ReconnectAfterRestart, res.ReconnectAfterHeal, res.ReconnectAfterReset, res.DeadLinkDetection} {
					if s.Missing != 0 {
						t.Fatalf("%d never completed: %+v", s.Missing, s)
					}
				}
				if bound := sc.Health.config().DetectionBound(); res.DeadLinkDetection.Max.D() > bound {
					t.Fatalf("dead-link detection %+v, bound %v", res.DeadLinkDetection, bound)
				}
				checkWorkload(t, sc, res)
			})
			inBubble(t, func(t *testing.T) {
				res, err := Run(t.Context(), sc, bubbleOpts())
				if err != nil {
					t.Fatal(err)
				}
				hashes = append(hashes, res.TraceHash)
			})
			if hashes[0] != hashes[1] {
				t.Fatalf("one seed, two traces: %v", hashes)
			}
		})
	}
}
