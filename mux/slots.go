package mux

import (
	"context"
	"fmt"
	"sync"
)

// SlotPool is a counting semaphore of stream slots with priorities: a
// share of the slots is reserved for high and critical holders, and
// callers that must wait are served highest priority first, in arrival
// order within a priority.
//
// Every Session limits its streams with one (Config.MaxStreams and
// ReservedStreams); a pool passed as Config.GlobalSlots to several
// sessions limits their streams together. A SlotPool is safe for
// concurrent use.
type SlotPool struct {
	mu       sync.Mutex
	max      int // 0: unlimited
	reserved int // slots only high and critical may take
	inUse    int
	waiters  [NumPriorities][]*slotWaiter // FIFO per priority
}

// slotWaiter is one Acquire waiting for a slot; ch is closed once the
// slot is granted (granted is set first, under the pool's lock).
type slotWaiter struct {
	ch      chan struct{}
	granted bool
}

// NewSlotPool returns a pool of max slots, of which reserved may be
// taken by high and critical holders only: low and normal ones get a slot
// only while fewer than max-reserved are in use. max <= 0 means
// unlimited (the pool then only counts); reserved is clamped to 0..max.
func NewSlotPool(max, reserved int) *SlotPool {
	if max < 0 {
		max = 0
	}
	reserved = min(max, reserved)
	if reserved < 0 {
		reserved = 0
	}
	return &SlotPool{max: max, reserved: reserved}
}

// Acquire takes a slot for a holder of priority prio, waiting for one if
// none is free to it. Waiters are served highest priority first, in
// arrival order within a priority; a newcomer never takes a slot ahead of
// a waiter of its own or a higher priority. It returns ctx.Err() if ctx
// ends first (a slot granted at that very moment is given back), or an
// error wrapping ErrInvalidPriority. Each successful Acquire must be
// matched by one Release.
func (p *SlotPool) Acquire(ctx context.Context, prio Priority) error {
	return p.acquire(ctx, prio, nil)
}

// errAborted: acquire's abort channel was closed (the session ended).
var errAborted = fmt.Errorf("%w: wait aborted", ErrSessionClosed)

// acquire is Acquire that also gives up, with errAborted, when abort is
// closed.
func (p *SlotPool) acquire(ctx context.Context, prio Priority, abort <-chan struct{}) error {
	if !prio.Valid() {
		return fmt.Errorf("%w: %d (want 0..3)", ErrInvalidPriority, uint8(prio))
	}
	done := ctx.Done()
	p.mu.Lock()
	select {
	case <-done:
		p.mu.Unlock()
		return ctx.Err()
	default:
	}
	if p.canTakeLocked(prio) {
		p.inUse++
		p.mu.Unlock()
		return nil
	}
	w := &slotWaiter{ch: make(chan struct{})}
	p.waiters[prio] = append(p.waiters[prio], w)
	p.mu.Unlock()

	var err error
	select {
	case <-w.ch:
		return nil
	case <-done:
		err = ctx.Err()
	case <-abort:
		err = errAborted
	}
	p.mu.Lock()
	if w.granted {
		// Granted while we were giving up: pass it on.
		p.inUse--
	} else {
		q := p.waiters[prio]
		for i, o := range q {
			if o == w {
				p.waiters[prio] = append(q[:i], q[i+1:]...)
				break
			}
		}
	}
	p.grantLocked()
	p.mu.Unlock()
	return err
}

// TryAcquire takes a slot for a holder of priority prio if one is free to
// it now and no holder of its own or a higher priority is waiting; it
// never waits. It reports whether it took one (false for an invalid
// priority).
func (p *SlotPool) TryAcquire(prio Priority) bool {
	if !prio.Valid() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.canTakeLocked(prio) {
		return false
	}
	p.inUse++
	return true
}

// Release gives back a slot taken by Acquire or TryAcquire and hands it
// to the first waiter it is free to. It panics if no slot is taken.
func (p *SlotPool) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inUse == 0 {
		panic("mux: SlotPool.Release without a slot taken")
	}
	p.inUse--
	p.grantLocked()
}

// InUse returns the number of slots taken.
func (p *SlotPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Waiting returns how many Acquire calls are waiting for a slot.
func (p *SlotPool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.waiters {
		n += len(q)
	}
	return n
}

// limit is how many slots may be in use for a holder of prio to take one.
func (p *SlotPool) limit(prio Priority) int {
	if prio >= PriorityHigh {
		return p.max
	}
	return p.max - p.reserved
}

func (p *SlotPool) fitsLocked(prio Priority) bool {
	return p.max == 0 || p.inUse < p.limit(prio)
}

// canTakeLocked: a slot is free to prio and nobody of prio or higher is
// queued ahead.
func (p *SlotPool) canTakeLocked(prio Priority) bool {
	if !p.fitsLocked(prio) {
		return false
	}
	for q := prio; q < NumPriorities; q++ {
		if len(p.waiters[q]) > 0 {
			return false
		}
	}
	return true
}

// grantLocked hands free slots to waiters, highest priority first. It
// stops at the first waiter that cannot have one: lower priorities have
// no higher a limit, so none of them could either, and a later arrival
// must not pass an earlier one of the same priority.
func (p *SlotPool) grantLocked() {
	for prio := PriorityCritical; ; prio-- {
		for len(p.waiters[prio]) > 0 {
			if !p.fitsLocked(prio) {
				return
			}
			w := p.waiters[prio][0]
			p.waiters[prio][0] = nil
			p.waiters[prio] = p.waiters[prio][1:]
			w.granted = true
			p.inUse++
			close(w.ch)
		}
		if prio == PriorityLow {
			return
		}
	}
}
