package metrics

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Rate counts events over a sliding window of n buckets, each width
// wide: a ring of counters keyed by bucket epoch (floor(UnixNano/width)).
// The window read at now is the bucket holding now, which is partly
// elapsed, and the n−1 before it.
//
// It is safe for concurrent use. Add is one atomic add while its bucket
// is current; the first Add into a bucket slot in a new epoch clears it
// under a mutex. Reads are lock-free. An Add whose time is already a
// full window behind the slot's epoch is dropped; an Add racing with a
// clear of its slot may land in the new epoch, which only happens when
// callers' times are a window apart.
type Rate struct {
	width int64 // nanoseconds
	slots []rateSlot
	mu    sync.Mutex // clears a slot for a new epoch
}

type rateSlot struct {
	epoch atomic.Int64
	n     atomic.Uint64
}

// NewRate returns a Rate over n buckets (n ≥ 1; 2 or more gives a
// smoother estimate) of the given width (positive): a window of n·width.
func NewRate(n int, width time.Duration) *Rate {
	if n < 1 || width <= 0 {
		panic("metrics: NewRate needs n ≥ 1 buckets of positive width")
	}
	r := &Rate{width: int64(width), slots: make([]rateSlot, n)}
	for i := range r.slots {
		r.slots[i].epoch.Store(math.MinInt64)
	}
	return r
}

// Window returns the span the rate covers: n·width.
func (r *Rate) Window() time.Duration { return time.Duration(r.width * int64(len(r.slots))) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (r *Rate) slot(e int64) *rateSlot {
	i := e % int64(len(r.slots))
	if i < 0 {
		i += int64(len(r.slots))
	}
	return &r.slots[i]
}

// Add counts n events at now.
func (r *Rate) Add(n uint64, now time.Time) {
	e := floorDiv(now.UnixNano(), r.width)
	s := r.slot(e)
	if s.epoch.Load() != e && !r.rotate(s, e) {
		return
	}
	s.n.Add(n)
}

// rotate readies slot s for epoch e and reports whether it holds e: it
// does not if it already holds a later epoch.
func (r *Rate) rotate(s *rateSlot, e int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := s.epoch.Load()
	if cur < e {
		// Clear before publishing the epoch, so that an Add that sees
		// epoch e adds to a cleared count.
		s.n.Store(0)
		s.epoch.Store(e)
		return true
	}
	return cur == e
}

// Sum returns the events counted in the window at now.
func (r *Rate) Sum(now time.Time) uint64 {
	e := floorDiv(now.UnixNano(), r.width)
	var total uint64
	for i := range int64(len(r.slots)) {
		s := r.slot(e - i)
		if s.epoch.Load() == e-i {
			total += s.n.Load()
		}
	}
	return total
}

// PerSecond returns the events per second in the window at now: Sum
// divided by the time the window spans up to now, (n−1)·width plus the
// elapsed part of the current bucket. For the first window after
// counting starts it underestimates, as if there had been no events
// before.
func (r *Rate) PerSecond(now time.Time) float64 {
	t := now.UnixNano()
	e := floorDiv(t, r.width)
	span := int64(len(r.slots)-1)*r.width + (t - e*r.width)
	if span <= 0 {
		span = r.width
	}
	return float64(r.Sum(now)) / (float64(span) / 1e9)
}
