package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Fake is a manual clock for tests and simulations: its time moves only
// by Advance and Set, so what happens at a given instant does not depend
// on the scheduler or the machine's speed.
//
// Timers fire in deadline order, and timers with the same deadline in the
// order they were armed (created or Reset). A channel timer sends on a
// channel with a buffer of one, without blocking, as a time.Timer does.
// The function of an AfterFunc timer runs synchronously, in the goroutine
// calling Advance or Set, with the clock's lock released: unlike
// time.AfterFunc, whose function runs in a goroutine of its own, this
// fixes the order of everything the timers set off. The function may use
// the clock — read it, arm or stop timers, even advance it — but must not
// wait for the goroutine advancing the clock.
//
// A Fake is safe for concurrent use; Advance and Set are meant to be
// called by one driving goroutine.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	armed  uint64 // timers armed so far: orders equal deadlines

	// armedSignal is closed, and cleared, when a timer is armed; it wakes
	// BlockUntil. It is nil while no one waits.
	armedSignal chan struct{}
}

var _ Clock = (*Fake)(nil)

// NewFake returns a Fake clock standing at start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start}
}

// Now returns the clock's current time. While an AfterFunc function or a
// channel timer fires, that is the timer's deadline.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a Timer that sends the clock's time on its channel once
// the clock has advanced by d. A timer with d <= 0 sends at once.
func (c *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, ch: make(chan time.Time, 1), index: -1}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arm(t, d)
	return t
}

// AfterFunc returns a Timer that calls f once the clock has advanced by d.
// f runs in the goroutine that advances the clock (see Fake). With
// d <= 0, f runs at the next Advance or Set, Advance(0) included, never
// inside AfterFunc itself: its caller may hold a lock f takes.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{clock: c, fn: f, index: -1}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arm(t, d)
	return t
}

// Advance moves the clock forward by d, firing, one after the other, the
// timers whose deadlines it reaches, including timers armed by those
// firing. It panics if d is negative.
func (c *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock: Fake.Advance with a negative duration")
	}
	c.mu.Lock()
	c.runUntil(c.now.Add(d))
}

// Set moves the clock to t. If t is after the clock's time, Set fires
// timers as Advance does; if it is before, the clock steps back and
// nothing fires: pending timers keep their deadlines.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	if t.Before(c.now) {
		c.now = t
		c.mu.Unlock()
		return
	}
	c.runUntil(t)
}

// Timers returns the number of pending timers: armed, and neither fired
// nor stopped.
func (c *Fake) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n timers are pending, so that a test
// advances the clock only once the goroutine it drives has armed its
// timer. It returns nil then, or ctx.Err() if ctx ends first.
func (c *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			c.mu.Unlock()
			return nil
		}
		if c.armedSignal == nil {
			c.armedSignal = make(chan struct{})
		}
		armed := c.armedSignal
		c.mu.Unlock()

		select {
		case <-armed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runUntil fires the timers due by target in order, then leaves the clock
// at target. It is called with c.mu held and releases it.
func (c *Fake) runUntil(target time.Time) {
	for len(c.timers) > 0 && !c.timers[0].when.After(target) {
		t := heap.Pop(&c.timers).(*fakeTimer)
		if t.when.After(c.now) {
			c.now = t.when
		}
		if t.ch != nil {
			t.send(c.now)
			continue
		}
		// f may call back into the clock.
		c.mu.Unlock()
		t.fn()
		c.mu.Lock()
	}
	if target.After(c.now) {
		c.now = target
	}
	c.mu.Unlock()
}

// arm schedules t to fire after d. c.mu must be held and t not pending.
func (c *Fake) arm(t *fakeTimer, d time.Duration) {
	if t.ch != nil && d <= 0 {
		// time.NewTimer(0) is ready at once too; a channel send cannot
		// run code of the caller's, so there is no lock to fear.
		t.send(c.now)
		return
	}
	c.armed++
	t.when = c.now.Add(d)
	t.seq = c.armed
	heap.Push(&c.timers, t)
	if c.armedSignal != nil {
		close(c.armedSignal)
		c.armedSignal = nil
	}
}

type fakeTimer struct {
	clock *Fake
	ch    chan time.Time // nil for an AfterFunc timer
	fn    func()
	when  time.Time
	seq   uint64 // when it was armed, among the clock's timers
	index int    // in clock.timers; -1 when not pending
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	return t.disarm()
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	wasPending := t.disarm()
	c.arm(t, d)
	return wasPending
}

// disarm takes t off the clock and empties its channel, so that no value
// from before is received afterwards. A value still unreceived counts as
// pending, as it does for a time.Timer since Go 1.23. c.mu must be held.
func (t *fakeTimer) disarm() bool {
	pending := false
	if t.index >= 0 {
		heap.Remove(&t.clock.timers, t.index)
		pending = true
	}
	if t.ch != nil {
		select {
		case <-t.ch:
			pending = true
		default:
		}
	}
	return pending
}

// send delivers now without blocking. The buffer is always empty here,
// since disarm drains it before any re-arming, but a clock that blocked
// under its lock would stop every goroutine that uses it.
func (t *fakeTimer) send(now time.Time) {
	select {
	case t.ch <- now:
	default:
	}
}

// timerHeap orders pending timers by deadline, then by arming order.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
