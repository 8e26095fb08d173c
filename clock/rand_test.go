package clock_test

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink/clock"
)

func draws(r *clock.Rand) []int64 {
	var out []int64
	for i := range 50 {
		out = append(out,
			r.Int64N(1000),
			int64(r.DurationN(time.Hour)),
			int64(r.Float64()*1e9),
			int64(r.Jitter(time.Second, float64(i)/50)))
	}
	return out
}

func TestRandSameSeedSameSequence(t *testing.T) {
	a := draws(clock.NewRand(rand.NewPCG(1, 2)))
	b := draws(clock.NewRand(rand.NewPCG(1, 2)))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d: %d and %d from the same seed", i, a[i], b[i])
		}
	}
	c := draws(clock.NewRand(rand.NewPCG(1, 3)))
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > len(a)/4 {
		t.Errorf("%d of %d draws equal across different seeds", same, len(a))
	}
}

func TestRandNilSourceIsSeeded(t *testing.T) {
	a, b := clock.NewRand(nil), clock.NewRand(nil)
	a1, b1 := a.Int64N(math.MaxInt64), b.Int64N(math.MaxInt64)
	a2, b2 := a.Int64N(math.MaxInt64), b.Int64N(math.MaxInt64)
	if a1 == b1 && a2 == b2 {
		t.Error("two Rands without a source drew the same numbers")
	}
}

func TestRandDurationN(t *testing.T) {
	r := clock.NewRand(rand.NewPCG(7, 7))
	for _, d := range []time.Duration{0, -time.Second} {
		if got := r.DurationN(d); got != 0 {
			t.Errorf("DurationN(%v) = %v, want 0", d, got)
		}
	}
	for range 1000 {
		if got := r.DurationN(time.Second); got < 0 || got >= time.Second {
			t.Fatalf("DurationN(1s) = %v, outside [0, 1s)", got)
		}
	}
}

func TestRandJitterBounds(t *testing.T) {
	r := clock.NewRand(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		d        time.Duration
		factor   float64
		min, max time.Duration
	}{
		{time.Second, 0.5, 500 * time.Millisecond, 1500 * time.Millisecond},
		{time.Second, 0.1, 900 * time.Millisecond, 1100 * time.Millisecond},
		{time.Second, 1, 0, 2 * time.Second},
		{time.Second, 3, 0, 2 * time.Second}, // factor capped at 1: never negative
		{time.Second, 0, time.Second, time.Second},
		{time.Second, -1, time.Second, time.Second},
		{time.Second, math.NaN(), time.Second, time.Second},
		{0, 0.5, 0, 0},
		{-time.Second, 0.5, -time.Second, -time.Second},
		{math.MaxInt64, 0.5, math.MaxInt64 / 2, math.MaxInt64},
	} {
		lo, hi := time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
		for range 2000 {
			got := r.Jitter(tc.d, tc.factor)
			lo, hi = min(lo, got), max(hi, got)
		}
		if lo < tc.min || hi > tc.max {
			t.Errorf("Jitter(%v, %v) ranged over [%v, %v], want within [%v, %v]", tc.d, tc.factor, lo, hi, tc.min, tc.max)
		}
		// The draws should cover most of the range, on both sides of d.
		if span := tc.max - tc.min; span > 0 && (lo > tc.min+span/10 || hi < tc.max-span/10) {
			t.Errorf("Jitter(%v, %v) ranged over only [%v, %v] of [%v, %v]", tc.d, tc.factor, lo, hi, tc.min, tc.max)
		}
	}
}

// TestRandConcurrentUse is for the race detector.
func TestRandConcurrentUse(t *testing.T) {
	r := clock.NewRand(rand.NewPCG(5, 6))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				r.Int64N(10)
				r.Jitter(time.Second, 0.2)
			}
		})
	}
	wg.Wait()
}
