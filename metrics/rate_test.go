package metrics

import (
	"sync"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	const w = 100 * time.Millisecond
	r := NewRate(10, w) // a one-second window
	if r.Window() != time.Second {
		t.Fatalf("Window = %v", r.Window())
	}
	start := time.Unix(1_700_000_000, 0) // on a bucket boundary
	at := func(d time.Duration) time.Time { return start.Add(d) }

	if r.Sum(start) != 0 || r.PerSecond(start) != 0 {
		t.Fatal("empty rate not 0")
	}
	// 10 events in each of the first ten buckets.
	for i := range 10 {
		r.Add(10, at(time.Duration(i)*w+w/2))
	}
	// At the end of the tenth bucket the window holds all 100 over
	// 9 full buckets plus the elapsed 99 ms of the current one.
	now := at(10*w - time.Millisecond)
	if got := r.Sum(now); got != 100 {
		t.Fatalf("Sum = %d, want 100", got)
	}
	if got, want := r.PerSecond(now), 100/0.999; !near(got, want) {
		t.Fatalf("PerSecond = %v, want %v", got, want)
	}
	// One bucket later the first bucket has left the window.
	now = at(10*w + w/2)
	if got := r.Sum(now); got != 90 {
		t.Fatalf("Sum after one bucket = %d, want 90", got)
	}
	if got, want := r.PerSecond(now), 90/0.95; !near(got, want) {
		t.Fatalf("PerSecond = %v, want %v", got, want)
	}
	// Adding in the new bucket reuses the first bucket's slot, cleared.
	r.Add(5, now)
	if got := r.Sum(now); got != 95 {
		t.Fatalf("Sum after reuse = %d, want 95", got)
	}
	// An add a full window old is dropped; one within the window counts.
	r.Add(1000, at(w/2))
	r.Add(1, at(5*w))
	if got := r.Sum(now); got != 96 {
		t.Fatalf("Sum after late adds = %d, want 96", got)
	}
	// Long silence: everything expires, even slots never overwritten.
	if got := r.Sum(at(time.Hour)); got != 0 || r.PerSecond(at(time.Hour)) != 0 {
		t.Fatalf("Sum after an hour = %d", got)
	}
	r.Add(3, at(time.Hour))
	if got := r.Sum(at(time.Hour + w)); got != 3 {
		t.Fatalf("Sum = %d, want 3", got)
	}
}

func TestRateEpochsAroundZero(t *testing.T) {
	// Times before 1970 floor to the right bucket.
	r := NewRate(2, time.Second)
	r.Add(1, time.Unix(0, -1))
	r.Add(1, time.Unix(0, 0))
	if got := r.Sum(time.Unix(0, 1)); got != 2 {
		t.Fatalf("Sum = %d, want 2", got)
	}
	if got := r.Sum(time.Unix(1, 0)); got != 1 {
		t.Fatalf("Sum a second on = %d, want 1 (the -1 ns event has left)", got)
	}
	one := NewRate(1, time.Second)
	one.Add(4, time.Unix(10, 0))
	if got := one.PerSecond(time.Unix(10, 0)); got != 4 {
		t.Fatalf("one-bucket PerSecond at its start = %v, want 4", got)
	}
}

func TestRateConcurrent(t *testing.T) {
	const w = time.Millisecond
	r := NewRate(4, w)
	start := time.Unix(1_700_000_000, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			// Each worker walks through 1000 buckets; all workers share
			// the times, so each bucket gets 8 adds of 1 at each step.
			for i := range 1000 {
				now := start.Add(time.Duration(i) * w / 4)
				r.Add(1, now)
				_ = r.PerSecond(now)
			}
		})
	}
	wg.Wait()
	// The window at the end (i from 984 to 999) holds 8 workers × 16
	// adds. None of them can be lost; a worker that fell a whole window
	// behind may add a stale event into it as well.
	end := start.Add(999 * w / 4)
	if got := r.Sum(end); got < 128 || got > 8000 {
		t.Fatalf("Sum = %d, want 128 or a little more", got)
	} else if got != 128 {
		t.Logf("Sum = %d: %d stale adds landed in the window", got, got-128)
	}
}
