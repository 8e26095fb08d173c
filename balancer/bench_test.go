package balancer

import (
	"fmt"
	"testing"
	"time"
)

// benchCands returns n eligible candidates with varied load, latency and
// score, every 20th one unhealthy (a realistic few down).
func benchCands(n int) []Candidate {
	cands := healthy(n)
	for i := range cands {
		cands[i].Load = int(mix64(uint64(i)) % 16)
		cands[i].Latency = time.Duration(1+mix64(uint64(i)+1)%200) * time.Millisecond
		cands[i].Score = float64(mix64(uint64(i)+2)%1000) / 1000
		cands[i].Healthy = i%20 != 7
	}
	return cands
}

func BenchmarkPick(b *testing.B) {
	key := []byte("block/123456")
	for _, s := range strategies() {
		for _, n := range []int{1000, 10000} {
			cands := benchCands(n)
			b.Run(fmt.Sprintf("%s/n=%d", s.name, n), func(b *testing.B) {
				st := s.new()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := st.Pick(cands, key); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPickParallel measures the shared atomic counter under contention.
func BenchmarkPickParallel(b *testing.B) {
	cands := benchCands(1000)
	for _, s := range strategies() {
		if s.name != "round_robin" && s.name != "p2c_peak_ewma" && s.name != "least_loaded_of_two" {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			st := s.new()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					st.Pick(cands, nil)
				}
			})
		})
	}
}
