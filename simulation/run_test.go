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
