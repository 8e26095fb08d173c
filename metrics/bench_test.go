package metrics

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

func BenchmarkCounterAdd(b *testing.B) {
	b.ReportAllocs()
	var c Counter
	for b.Loop() {
		c.Add(3)
	}
}

func BenchmarkCounterAddParallel(b *testing.B) {
	b.ReportAllocs()
	var c Counter
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(3)
		}
	})
}

func BenchmarkEWMAObserve(b *testing.B) {
	b.ReportAllocs()
	e := NewEWMA(10 * time.Second)
	i := 0
	for b.Loop() {
		i++
		e.Observe(float64(i%100), t0.Add(time.Duration(i)*time.Microsecond))
	}
}

func BenchmarkEWMAObserveParallel(b *testing.B) {
	b.ReportAllocs()
	e := NewEWMA(10 * time.Second)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			e.Observe(float64(i%100), t0.Add(time.Duration(i)*time.Microsecond))
		}
	})
}

func BenchmarkPeakEWMAObserve(b *testing.B) {
	b.ReportAllocs()
	p := NewPeakEWMA(10 * time.Second)
	i := 0
	for b.Loop() {
		i++
		p.Observe(float64(i%100), t0.Add(time.Duration(i)*time.Microsecond))
	}
}

func BenchmarkEWMAValue(b *testing.B) {
	b.ReportAllocs()
	e := NewEWMA(10 * time.Second)
	e.Observe(1, t0)
	var sink float64
	for b.Loop() {
		sink += e.Value()
	}
	_ = sink
}

func BenchmarkDecayingCounterAdd(b *testing.B) {
	b.ReportAllocs()
	d := NewDecayingCounter(time.Minute)
	i := 0
	for b.Loop() {
		i++
		d.Add(1, t0.Add(time.Duration(i)*time.Microsecond))
	}
}

// latencies returns n round trips around 50 ms, spanning a few powers of two.
func latencies(seed uint64, n int) []time.Duration {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(50e6 * math.Exp(r.NormFloat64()*0.5))
	}
	return out
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	ds := latencies(1, 4096)
	i := 0
	for b.Loop() {
		h.Record(ds[i&4095])
		i++
	}
}

func BenchmarkHistogramRecordParallel(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	ds := latencies(1, 4096)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.Record(ds[i&4095])
			i++
		}
	})
}

func BenchmarkHistogramSnapshot(b *testing.B) {
	var h Histogram
	for _, d := range latencies(2, 10000) {
		h.Record(d)
	}
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = h.Snapshot()
		}
	})
	b.Run("into", func(b *testing.B) {
		b.ReportAllocs()
		var s HistogramSnapshot
		for b.Loop() {
			h.SnapshotInto(&s)
		}
	})
	s := h.Snapshot()
	b.Logf("%d non-empty buckets", len(s.buckets))
	b.Run("quantiles", func(b *testing.B) {
		b.ReportAllocs()
		var sink time.Duration
		for b.Loop() {
			sink += s.Quantile(0.5) + s.Quantile(0.9) + s.Quantile(0.99) + s.Quantile(0.999)
		}
		_ = sink
	})
}

// BenchmarkSnapshot10kHistograms snapshots 10,000 per-peer histograms,
// as the manager would every scrape, reusing one snapshot per peer.
func BenchmarkSnapshot10kHistograms(b *testing.B) {
	const peers = 10000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	hs := make([]Histogram, peers)
	ds := latencies(3, 1<<16)
	for i := range hs {
		for j := range 1000 {
			hs[i].Record(ds[(i*1000+j)&(1<<16-1)])
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("%d bytes per histogram", (after.HeapAlloc-before.HeapAlloc)/peers)
	snaps := make([]HistogramSnapshot, peers)
	for i := range hs {
		hs[i].SnapshotInto(&snaps[i]) // size the storage once
	}
	b.Run("into", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range hs {
				hs[i].SnapshotInto(&snaps[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/10k")
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range hs {
				snaps[i] = hs[i].Snapshot()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/10k")
	})
	b.Run("into+p50,p99", func(b *testing.B) {
		b.ReportAllocs()
		var sink time.Duration
		for b.Loop() {
			for i := range hs {
				hs[i].SnapshotInto(&snaps[i])
				sink += snaps[i].Quantile(0.5) + snaps[i].Quantile(0.99)
			}
		}
		_ = sink
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/10k")
	})
}

func BenchmarkRateAdd(b *testing.B) {
	b.ReportAllocs()
	r := NewRate(10, 100*time.Millisecond)
	i := 0
	for b.Loop() {
		i++
		r.Add(1, t0.Add(time.Duration(i)*time.Microsecond))
	}
}

func BenchmarkRateAddParallel(b *testing.B) {
	b.ReportAllocs()
	r := NewRate(10, 100*time.Millisecond)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Add(1, t0.Add(time.Duration(i)*time.Microsecond))
		}
	})
}

func BenchmarkRatePerSecond(b *testing.B) {
	b.ReportAllocs()
	r := NewRate(10, 100*time.Millisecond)
	for i := range 1000 {
		r.Add(1, t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(time.Second)
	var sink float64
	for b.Loop() {
		sink += r.PerSecond(now)
	}
	_ = sink
}
