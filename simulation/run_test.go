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
