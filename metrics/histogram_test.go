package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketLayout(t *testing.T) {
	check := func(v uint64) {
		g, s := bucketOf(v)
		if g < 0 || g >= numGroups || s < 0 || s >= subCount {
			t.Fatalf("bucketOf(%d) = %d, %d out of range", v, g, s)
		}
		i := uint32(g*subCount + s)
		lo, w := bucketBounds(i)
		if v < lo || v-lo >= w {
			t.Fatalf("%d not in bucket %d [%d, %d+%d)", v, i, lo, lo, w)
		}
		if v > 0 {
			if e := math.Abs(bucketValue(i)-float64(v)) / float64(v); e > 1.0/128 {
				t.Fatalf("%d: relative error %v > 1/128", v, e)
			}
		}
	}
	for v := range uint64(4096) {
		check(v)
	}
	for k := range 64 {
		p := uint64(1) << k
		check(p)
		check(p - 1)
		check(p + 1)
	}
	check(math.MaxUint64)
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		check(r.Uint64() >> r.IntN(64))
	}
	// Buckets tile the line: each starts where the previous ends.
	next := uint64(0)
	for i := range uint32(numGroups * subCount) {
		lo, w := bucketBounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		next = lo + w
	}
	if next != 0 { // wrapped past MaxUint64 exactly
		t.Fatalf("last bucket ends at %d, want 2^64", next)
	}
}

// exactQuantile is the nearest-rank quantile of sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	if q <= 0 {
		return sorted[0]
	}
	r := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(r, 1)-1]
}

func TestHistogramQuantileError(t *testing.T) {
	qs := []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1}
	worst := 0.0
	for seed := range uint64(5) {
		r := rand.New(rand.NewPCG(seed, 99))
		var h Histogram
		n := 20000 + r.IntN(80000)
		samples := make([]time.Duration, n)
		var sum time.Duration
		for i := range samples {
			// Log-uniform from 1 µs to 200 s, and a dense cluster at ~50 ms.
			var d time.Duration
			if i%2 == 0 {
				d = time.Duration(math.Exp(math.Log(1e3) + r.Float64()*(math.Log(2e11)-math.Log(1e3))))
			} else {
				d = time.Duration(50e6 * math.Exp(r.NormFloat64()*0.3))
			}
			samples[i] = d
			sum += d
			h.Record(d)
		}
		slices.Sort(samples)
		s := h.Snapshot()
		if s.Count != uint64(n) || s.Sum != sum || s.Min != samples[0] || s.Max != samples[n-1] {
			t.Fatalf("count %d sum %v min %v max %v, want %d %v %v %v",
				s.Count, s.Sum, s.Min, s.Max, n, sum, samples[0], samples[n-1])
		}
		if s.Mean() != time.Duration(float64(sum)/float64(n)) {
			t.Fatalf("mean %v", s.Mean())
		}
		for _, q := range qs {
			want, got := exactQuantile(samples, q), s.Quantile(q)
			e := math.Abs(float64(got-want)) / float64(want)
			worst = max(worst, e)
			if e > 0.02 {
				t.Errorf("seed %d q %v: %v, exact %v, error %.3f%% > 2%%", seed, q, got, want, 100*e)
			}
			if e > 1.0/128+1e-12 {
				t.Errorf("seed %d q %v: %v, exact %v, error %.3f%% beyond the layout's 0.78%%", seed, q, got, want, 100*e)
			}
		}
	}
	t.Logf("worst relative quantile error: %.4f%%", 100*worst)
}

func TestHistogramEmptyAndSmall(t *testing.T) {
	var h Histogram
	s := h.Snapshot()
	if s.Count != 0 || s.Sum != 0 || s.Min != 0 || s.Max != 0 || s.Mean() != 0 || s.Quantile(0.5) != 0 {
		t.Fatalf("empty snapshot %+v", s)
	}
	h.Record(-5) // counts as 0
	h.Record(0)
	h.Record(100)
	s = h.Snapshot()
	if s.Count != 3 || s.Min != 0 || s.Max != 100 || s.Sum != 100 || s.Quantile(0.5) != 0 || s.Quantile(0.9) != 100 {
		t.Fatalf("snapshot %+v p50 %v p90 %v", s, s.Quantile(0.5), s.Quantile(0.9))
	}
	h.Record(math.MaxInt64)
	if s = h.Snapshot(); s.Max != math.MaxInt64 || s.Sum != math.MaxInt64 || s.Quantile(0.99) < math.MaxInt64/128*127 {
		t.Fatalf("max %v p99 %v", s.Max, s.Quantile(0.99))
	}
	h.Reset()
	if s = h.Snapshot(); s.Count != 0 || s.Max != 0 {
		t.Fatalf("after Reset: %+v", s)
	}
	h.Record(time.Millisecond)
	if s = h.Snapshot(); s.Count != 1 || s.Min != time.Millisecond || s.Max != time.Millisecond {
		t.Fatalf("after Reset and Record: %+v", s)
	}
}

func randomDurations(r *rand.Rand, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(20e6 * math.Exp(r.NormFloat64()))
	}
	return out
}

func sameSnapshot(t *testing.T, what string, a, b HistogramSnapshot) {
	t.Helper()
	if a.Count != b.Count || a.Sum != b.Sum || a.Min != b.Min || a.Max != b.Max || !slices.Equal(a.buckets, b.buckets) {
		t.Fatalf("%s: %+v (%d buckets) != %+v (%d buckets)", what, a, len(a.buckets), b, len(b.buckets))
	}
}

func TestHistogramMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	for _, d := range randomDurations(r, 5000) {
		a.Record(d)
		all.Record(d)
	}
	for _, d := range randomDurations(r, 3000) {
		b.Record(d * 10)
		all.Record(d * 10)
	}
	sa, sb := a.Snapshot(), b.Snapshot()

	merged := sa
	merged.Merge(&sb)
	sameSnapshot(t, "snapshot merge", merged, all.Snapshot())

	var empty HistogramSnapshot
	empty.Merge(&sa)
	sameSnapshot(t, "merge into empty", empty, sa)

	a.Merge(&b)
	a.Merge(&a)
	a.Merge(new(Histogram))
	sameSnapshot(t, "histogram merge", a.Snapshot(), all.Snapshot())
	sameSnapshot(t, "merged-from unchanged", b.Snapshot(), sb)
}

func TestHistogramSub(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var h, window Histogram
	for _, d := range randomDurations(r, 4000) {
		h.Record(d)
	}
	before := h.Snapshot()
	for _, d := range randomDurations(r, 1000) {
		h.Record(d * 3)
		window.Record(d * 3)
	}
	after := h.Snapshot()
	got, want := after.Sub(&before), window.Snapshot()
	if got.Count != want.Count || got.Sum != want.Sum || !slices.Equal(got.buckets, want.buckets) {
		t.Fatalf("Sub: %+v, want %+v", got, want)
	}
	for _, d := range []struct {
		got, want time.Duration
	}{{got.Min, want.Min}, {got.Max, want.Max}} {
		if e := math.Abs(float64(d.got-d.want)) / float64(d.want); e > 1.0/64 {
			t.Fatalf("Sub min/max %v, want %v within 1/64", d.got, d.want)
		}
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if got.Quantile(q) != want.Quantile(q) && got.Quantile(q) != min(max(want.Quantile(q), got.Min), got.Max) {
			t.Fatalf("Sub p%v %v, want %v", q, got.Quantile(q), want.Quantile(q))
		}
	}
	if e := after.Sub(&after); e.Count != 0 || e.Sum != 0 {
		t.Fatalf("self Sub %+v", e)
	}
}

func TestHistogramCumulativeCounts(t *testing.T) {
	// Prometheus's default buckets, in seconds.
	secs := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	bounds := make([]time.Duration, len(secs))
	for i, s := range secs {
		bounds[i] = time.Duration(s * 1e9)
	}
	r := rand.New(rand.NewPCG(7, 8))
	var h Histogram
	samples := randomDurations(r, 50000)
	// Put some samples exactly on the bounds and just around them.
	for _, b := range bounds {
		samples = append(samples, b, b-b/200, b+b/200)
	}
	for _, d := range samples {
		h.Record(d)
	}
	s := h.Snapshot()
	got := s.CumulativeCounts(bounds, nil)
	if len(got) != len(bounds) {
		t.Fatalf("%d counts for %d bounds", len(got), len(bounds))
	}
	for i, b := range bounds {
		var lo, hi, exact uint64
		for _, d := range samples {
			if float64(d) <= float64(b)*(1-1.0/128) {
				lo++
			}
			if float64(d) <= float64(b)*(1+1.0/128) {
				hi++
			}
			if d <= b {
				exact++
			}
		}
		if got[i] < lo || got[i] > hi {
			t.Errorf("le %v: %d, want %d..%d (exact %d)", b, got[i], lo, hi, exact)
		}
		if i > 0 && got[i] < got[i-1] {
			t.Errorf("not cumulative at %v", b)
		}
	}
	// Small values are exact, so bounds on them are too; reuse dst.
	var small Histogram
	for v := range time.Duration(100) {
		small.Record(v)
	}
	ss := small.Snapshot()
	got = ss.CumulativeCounts([]time.Duration{-1, 0, 9, 99, 1000}, got)
	if !slices.Equal(got, []uint64{0, 1, 10, 100, 100}) {
		t.Fatalf("small: %v", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h, other Histogram
	const workers, per = 8, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		var s HistogramSnapshot
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.SnapshotInto(&s)
			if s.Count > 0 && (s.Min > s.Max || s.Quantile(0.5) < s.Min || s.Quantile(0.5) > s.Max) {
				t.Errorf("inconsistent snapshot: min %v max %v p50 %v", s.Min, s.Max, s.Quantile(0.5))
				return
			}
			other.Merge(&h)
			other.Reset()
		}
	})
	var want time.Duration
	for w := range workers {
		for i := range per {
			want += time.Duration((w*per + i) * 997)
		}
		wg.Go(func() {
			for i := range per {
				h.Record(time.Duration((w*per + i) * 997))
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	s := h.Snapshot()
	if s.Count != workers*per || s.Sum != want || s.Min != 0 || s.Max != time.Duration((workers*per-1)*997) {
		t.Fatalf("after concurrent records: %+v, want count %d sum %v", s, workers*per, want)
	}
}
