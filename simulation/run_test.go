package simulation

import (
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
	})
}

func TestRunDeterministic(t *testing.T) {
	sc := baseline(20)
	sc.Faults = []Fault{
		{Kind: FaultChurn, At: Duration(5 * time.Second), For: Duration(15 * time.Second), Rate: 0.5, Down: Duration(3 * time.Second)},
		{Kind: FaultReset, At: Duration(7 * time.Second), Nodes: []int{0, 1}},
	}
	var hashes []string
	for range 3 {
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
