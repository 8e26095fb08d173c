package warming

import (
	"math/rand/v2"
	"testing"
	"time"
)

// benchCands returns n candidates as a node's address book holds them:
// most never connected, a few connected, warm, warming or failed, every
// 50th with an open circuit.
func benchCands(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		c := &cs[i]
		c.ID = testID(i)
		c.Score = float64(mix64(uint64(i))%1000) / 1000
		c.Tried = i%3 != 0
		c.Dialable = true
		c.CircuitOpen = i%50 == 49
		switch i % 100 {
		case 1, 2, 3, 4:
			c.Connected = true
		case 5, 6:
			c.Connected, c.State, c.Role = true, Warm, Kept
		case 7:
			c.State = Warming
		case 8:
			c.State, c.Failures, c.LastFailure = Failed, 2, t0.Add(-time.Second)
		}
	}
	return cs
}

// BenchmarkPlan is the policy's decision cost per round: 10,000
// candidates, 32 kept (8 slots exploring), up to 8 extras, scaling on.
func BenchmarkPlan(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MinWarm, cfg.MaxExtra, cfg.MaxConcurrent = 32, 8, 0
	p, err := New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		b.Fatal(err)
	}
	cands := benchCands(10_000)
	load := Load{Links: 400, Streams: 3000, Capacity: 3200}
	var plan Plan
	b.ReportAllocs()
	for b.Loop() {
		p.Plan(t0, cands, load, 100, &plan)
	}
	b.ReportMetric(float64(len(cands)), "candidates")
}
