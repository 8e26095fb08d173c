package trim_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/peerlink/peerlink/trim"
)

// BenchmarkVictims10k: one trim decision over 10,000 links, closing
// down to 8,000 (besides the ~1.7 % in their grace period) with every
// rule on: 2,000 subnets, an outbound floor, 2 % kept.
func BenchmarkVictims10k(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	cands := make([]trim.Candidate, 10_000)
	for i := range cands {
		var p [32]byte
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		cands[i] = trim.Candidate{
			Peer: p, Priority: trim.Priority(rng.Float64(), rng.IntN(3)*10), Inbound: rng.IntN(4) > 0,
			Opened: t0.Add(-time.Duration(rng.IntN(3600)) * time.Second), Group: uint64(rng.IntN(2000)),
			Keep: rng.IntN(50) == 0,
		}
	}
	p := trim.Policy{Target: 8000, MaxInbound: 7000, MinOutbound: 8, MaxPerGroup: 16, GracePeriod: time.Minute}
	var dst []int
	b.ReportAllocs()
	for b.Loop() {
		dst = p.Victims(t0, cands, dst[:0])
	}
	if len(dst) < 1500 {
		b.Fatalf("%d victims", len(dst))
	}
	b.ReportMetric(float64(len(dst)), "victims")
}
