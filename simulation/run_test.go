package simulation

import (
	"encoding/json"
	"errors"
	"runtime"
	"testing"
	"time"
)

func baseline(n int) Scenario {
	return Scenario{
		Name:     "baseline",
		Nodes:    n,
		Degree:   4,
		Duration: Duration(30 * time.Second),
		Seed:     1,
		Link:     LinkSpec{Latency: Duration(20 * time.Millisecond), Spread: Duration(10 * time.Millisecond), Jitter: Duration(2 * time.Millisecond), Bandwidth: 10 << 20},
	}
}

func TestRunBaseline(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), baseline(30), bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", *res)
		if res.HeapPerNode <= 0 || res.GoroutinesPerNode <= 0 || (runtime.GOOS == "linux" && res.CPUPerNode <= 0) {
			t.Errorf("resources per node: heap %d, goroutines %.1f, CPU %v; want each measured", res.HeapPerNode, res.GoroutinesPerNode, res.CPUPerNode)
		}
	})
}

func TestRunDeterministic(t *testing.T) {
	sc := baseline(20)
	sc.Faults = []Fault{
		{Kind: FaultChurn, At: Duration(5 * time.Second), For: Duration(15 * time.Second), Rate: 0.5, Down: Duration(3 * time.Second)},
		{Kind: FaultReset, At: Duration(7 * time.Second), Nodes: []int{0, 1}},
		{Kind: FaultPartition, At: Duration(10 * time.Second), For: Duration(8 * time.Second), Groups: [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}},
	}
	sc.Health = HealthSpec{Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), FailureThreshold: 2}
	var hashes []string
	// One run per processor count: the schedule of goroutines differs,
	// the trace must not.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 4} {
		runtime.GOMAXPROCS(procs)
		inBubble(t, func(t *testing.T) {
			res, err := Run(t.Context(), sc, bubbleOpts())
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, res.TraceHash)
			t.Logf("hash %s, %d records, %d crashes, reconnect after restart %+v", res.TraceHash, res.TraceLen, res.Crashes, res.ReconnectAfterRestart)
		})
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("one seed, different traces: %v", hashes)
	}
}

// TestRunPartitionAndHeal cuts a 30-node network in two for 20 s: every
// link across the cut must be declared dead by both ends within the
// health monitor's bound, and come back after the heal.
func TestRunPartitionAndHeal(t *testing.T) {
	sc := baseline(30)
	sc.Name = "partition-and-heal"
	sc.Duration = Duration(70 * time.Second)
	sc.Health = HealthSpec{Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), FailureThreshold: 2}
	var left []int
	for i := range 15 {
		left = append(left, i)
	}
	partitionAt, healAt := 10*time.Second, 30*time.Second
	sc.Faults = []Fault{{Kind: FaultPartition, At: Duration(partitionAt), For: Duration(healAt - partitionAt), Groups: [][]int{left}}}
	g, err := sc.Graph()
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for _, e := range g.Edges() {
		if (e[0] < 15) != (e[1] < 15) {
			cut++
		}
	}
	if cut == 0 {
		t.Fatal("no edge crosses the cut: pick another seed")
	}
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cut %d of %d edges; detection %+v; reconnect after heal %+v", cut, res.Edges, res.DeadLinkDetection, res.ReconnectAfterHeal)
		if res.DroppedEvents != 0 {
			t.Fatalf("%d events dropped", res.DroppedEvents)
		}
		if !res.FullyConnected || res.FullyConnectedAt.D() > partitionAt {
			t.Fatalf("not fully connected before the partition (at %v)", res.FullyConnectedAt)
		}
		bound := sc.Health.config().DetectionBound()
		d := res.DeadLinkDetection
		if d.Count != 2*cut || d.Missing != 0 || d.Max.D() > bound {
			t.Fatalf("dead-link detection %+v: want both ends of %d cut links within %v", d, cut, bound)
		}
		for _, det := range res.Detections {
			if det.Cause != "partition" || det.At.D() != partitionAt {
				t.Fatalf("detection %+v", det)
			}
		}
		// Halfway through the partition every cut link is down, every
		// other up.
		mid := res.Samples[int((partitionAt+healAt)/2/time.Second)]
		if mid.EdgesUp != res.Edges-cut || mid.NodesUp != 30 {
			t.Fatalf("mid-partition sample %+v: want %d edges up", mid, res.Edges-cut)
		}
		r := res.ReconnectAfterHeal
		// Dials that started inside the partition time out after
		// DialAddrTimeout (10 s); the backoff between attempts has grown
		// to at most 16 s by then (1+2+4+8 s with ±50 % jitter).
		if r.Count != cut || r.Missing != 0 || r.Max.D() > 30*time.Second {
			t.Fatalf("reconnect after heal %+v: want all %d cut links back within 30 s", r, cut)
		}
		if last := res.Samples[len(res.Samples)-1]; last.EdgesUp != res.Edges {
			t.Fatalf("at the end %d of %d edges up", last.EdgesUp, res.Edges)
		}
	})
}

// edgeOf returns the first edge of g at node i.
func edgeOf(g Graph, i int) [2]int { return [2]int{i, g.Adj[i][0]} }

// The harness's true figures are what the managers measure: a ping's RTT
// is the sum of the two directions' latencies, before and after one
// direction is degraded.
func TestRunManagersSeeTrueLatency(t *testing.T) {
	sc := baseline(12)
	sc.Link.Jitter = 0
	sc.Link.Bandwidth = 0
	g, _ := sc.Graph()
	e := edgeOf(g, 0)
	sc.Duration = Duration(20 * time.Second)
	sc.Faults = []Fault{{Kind: FaultDegrade, At: Duration(10 * time.Second), Nodes: []int{e[0], e[1]}, Link: &LinkSpec{Latency: Duration(150 * time.Millisecond)}}}
	inBubble(t, func(t *testing.T) {
		s, err := Start(sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ping := func() time.Duration {
			res, err := s.Manager(e[0]).CheckConnectionHealth(t.Context(), s.ID(e[1]))
			if err != nil || !res.Healthy {
				t.Fatalf("ping %d→%d: %+v, %v", e[0], e[1], res, err)
			}
			return res.RTT
		}
		time.Sleep(5 * time.Second) // virtual: the links come up within about a second
		before := s.Network().RTT(e[0], e[1])
		if got := ping(); got != before {
			t.Fatalf("RTT %v, want the true %v", got, before)
		}
		if _, err := s.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		after := s.Network().RTT(e[1], e[0])
		if after != before+150*time.Millisecond {
			t.Fatalf("true RTT after the degradation %v, want %v", after, before+150*time.Millisecond)
		}
		if got := ping(); got != after {
			t.Fatalf("RTT after the degradation %v, want the true %v", got, after)
		}
	})
}

// A crashed node restarts with the same identity and address: its
// neighbours redial it and it redials them.
func TestRunCrashRestart(t *testing.T) {
	sc := baseline(20)
	sc.Duration = Duration(40 * time.Second)
	const victim = 7
	sc.Faults = []Fault{{Kind: FaultCrash, At: Duration(5 * time.Second), For: Duration(10 * time.Second), Nodes: []int{victim}}}
	inBubble(t, func(t *testing.T) {
		s, err := Start(sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		deg := s.Graph().Degree(victim)
		t.Logf("reconnect after restart %+v", res.ReconnectAfterRestart)
		if res.Crashes != 1 || res.Restarts != 1 {
			t.Fatalf("%d crashes, %d restarts", res.Crashes, res.Restarts)
		}
		// The victim's neighbours redial it with backoff (1 s, 2 s, 4 s,
		// 8 s ± 50 %) over its 10 s down; the next attempt comes within
		// 12 s of the restart.
		if r := res.ReconnectAfterRestart; r.Count != deg || r.Missing != 0 || r.Max.D() > 12*time.Second {
			t.Fatalf("reconnect after restart %+v, want all %d edges back within 12 s", r, deg)
		}
		during := res.Samples[10]
		if during.NodesUp != 19 || during.EdgesUp != res.Edges-deg {
			t.Fatalf("while the victim is down: %+v", during)
		}
		m := s.Manager(victim)
		if m == nil || m.ID() != s.ID(victim) {
			t.Fatal("restarted with another identity")
		}
		for _, j := range s.Graph().Adj[victim] {
			if _, err := m.ConnectionInfo(s.ID(j)); err != nil {
				t.Fatalf("restarted node not linked to neighbour %d: %v", j, err)
			}
		}
		if _, err := s.Run(t.Context()); !errors.Is(err, ErrRunTwice) {
			t.Fatalf("second Run: %v", err)
		}
		if err := s.Restart(victim); !errors.Is(err, ErrNodeUp) {
			t.Fatalf("Restart of a running node: %v", err)
		}
		if err := s.Crash(victim); err != nil {
			t.Fatal(err)
		}
		if err := s.Crash(victim); !errors.Is(err, ErrNodeDown) {
			t.Fatalf("second Crash: %v", err)
		}
		if err := s.Crash(sc.Nodes); !errors.Is(err, ErrNoNode) {
			t.Fatalf("Crash of node %d of %d: %v", sc.Nodes, sc.Nodes, err)
		}
	})
}

func TestRunBlackHoleDetection(t *testing.T) {
	sc := baseline(16)
	sc.Duration = Duration(80 * time.Second)
	g, _ := sc.Graph()
	e := edgeOf(g, 3)
	holeAt := 12*time.Second + 300*time.Millisecond
	sc.Faults = []Fault{{Kind: FaultBlackHole, At: Duration(holeAt), Nodes: []int{e[0], e[1]}}}
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		bound := sc.Health.config().DetectionBound() // 55 s with the defaults
		d := res.DeadLinkDetection
		t.Logf("detections %+v", res.Detections)
		if d.Count != 2 || d.Missing != 0 || d.Max.D() > bound {
			t.Fatalf("detection %+v, want both ends within %v", d, bound)
		}
		for _, det := range res.Detections {
			if det.Cause != "blackhole" || keyOf(det.Node, det.Peer) != keyOf(e[0], e[1]) {
				t.Fatalf("detection %+v on another link", det)
			}
		}
		// Declared dead, the link is redialed (the hole took only the
		// links open at the time) and is up at the end.
		if last := res.Samples[len(res.Samples)-1]; last.EdgesUp != res.Edges {
			t.Fatalf("at the end %d of %d edges up", last.EdgesUp, res.Edges)
		}
	})
}

func TestRunTopologies(t *testing.T) {
	for _, tc := range []struct {
		topology string
		edges    int
	}{{TopologyFullMesh, 8 * 7 / 2}, {TopologySmallWorld, 12 * 4 / 2}} {
		t.Run(tc.topology, func(t *testing.T) {
			sc := Scenario{Nodes: 8, Topology: tc.topology, Degree: 4, Rewire: 0.3, Duration: Duration(5 * time.Second), Seed: 4,
				Link: LinkSpec{Latency: Duration(10 * time.Millisecond)}}
			if tc.topology == TopologySmallWorld {
				sc.Nodes = 12
			}
			inBubble(t, func(t *testing.T) {
				res, err := Run(t.Context(), sc, bubbleOpts())
				if err != nil {
					t.Fatal(err)
				}
				if res.Edges != tc.edges || !res.FullyConnected {
					t.Fatalf("%d edges, fully connected %v; want %d, true", res.Edges, res.FullyConnected, tc.edges)
				}
				b, err := json.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
				var back map[string]any
				_ = json.Unmarshal(b, &back)
				if back["trace_hash"] != res.TraceHash || back["nodes"] != float64(sc.Nodes) {
					t.Fatalf("JSON %s", b)
				}
			})
		})
	}
}

// Faults applied on the fly are traced and measured like scheduled ones.
func TestSimApply(t *testing.T) {
	sc := baseline(10)
	sc.Duration = Duration(20 * time.Second)
	inBubble(t, func(t *testing.T) {
		s, err := Start(sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(5 * time.Second) // virtual: the links are up within about a second
		e := edgeOf(s.Graph(), 2)
		if err := s.Apply(Fault{Kind: FaultReset, Nodes: []int{e[0], e[1]}}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []Fault{
			{Kind: FaultCrash, Nodes: []int{1}, For: Duration(time.Second)},
			{Kind: FaultChurn, Rate: 1},
			{Kind: FaultReset, Nodes: []int{1}},
		} {
			if err := s.Apply(bad); !errors.Is(err, ErrScenario) {
				t.Errorf("Apply(%+v): %v, want ErrScenario", bad, err)
			}
		}
		res, err := s.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		r := res.Reconnects
		if len(r) != 1 || r[0].Cause != "reset" || r[0].Edge != e || r[0].At.D() != 5*time.Second {
			t.Fatalf("reconnects %+v, want the reset of %v at 5s", r, e)
		}
		// The dialing end redials after its first reconnect wait (up to
		// Backoff.InitialInterval, 1 s) and one round of handshakes.
		if r[0].After.D() > 2*time.Second || res.ReconnectAfterReset.Count != 1 {
			t.Fatalf("reconnect after reset %+v", res.ReconnectAfterReset)
		}
	})
}

// A node that loses power sends nothing, not even its close: each peer
// finds its link dead by its own health checks, then the node comes back.
func TestRunPowerOff(t *testing.T) {
	sc := baseline(16)
	sc.Duration = Duration(300 * time.Second)
	const victim = 5
	sc.Faults = []Fault{{Kind: FaultPowerOff, At: Duration(10 * time.Second), For: Duration(70 * time.Second), Nodes: []int{victim}}}
	g, _ := sc.Graph()
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("detections %+v; reconnect after restart %+v", res.Detections, res.ReconnectAfterRestart)
		hc := sc.Health.config()
		d := res.DeadLinkDetection
		if d.Count != g.Degree(victim) || d.Missing != 0 || d.Max.D() > hc.DetectionBound() {
			t.Fatalf("detection %+v: want each of the %d peers within %v", d, g.Degree(victim), hc.DetectionBound())
		}
		for _, det := range res.Detections {
			// No close crossed: only failed probes (at least one timeout)
			// can have told.
			if det.Cause != "poweroff" || det.Peer != victim || det.After.D() < hc.Timeout {
				t.Fatalf("detection %+v: want a health-check finding, after at least %v", det, hc.Timeout)
			}
		}
		// The peers that redial it have failed for 35 s by the restart:
		// their backoff (capped at 60 s) and breaker (open 30 s) make
		// them wait up to a capped interval and a dial.
		if r := res.ReconnectAfterRestart; r.Count != g.Degree(victim) || r.Missing != 0 || r.Max.D() > 70*time.Second {
			t.Fatalf("reconnect after restart %+v: want all %d links back within 70 s", r, g.Degree(victim))
		}
	})
}
