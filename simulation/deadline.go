package simulation

import "time"

// movable is a deadline that a wait already under way must follow when
// it moves, as net.Conn requires of its deadlines. Its owner guards it
// with a lock; wait runs without.
type movable struct {
	at    time.Time     // zero: none
	moved chan struct{} // closed, and replaced, by set
}

func newMovable() movable { return movable{moved: make(chan struct{})} }

// set moves the deadline to t (zero: none).
func (d *movable) set(t time.Time) {
	d.at = t
	close(d.moved)
	d.moved = make(chan struct{})
}

// waitOutcome says how waitUntil ended.
type waitOutcome int

const (
	woken   waitOutcome = iota // a or b was ready
	expired                    // the deadline passed
	moved                      // the deadline moved: look again
)

// waitUntil waits for a or b (either may be nil) until the deadline of
// the snapshot d passes or d moves. The timer is the only clock it
// reads, so that it runs on a synctest bubble's fake clock.
func waitUntil(d movable, a, b <-chan struct{}) waitOutcome {
	var expire <-chan time.Time
	if !d.at.IsZero() {
		t := time.NewTimer(time.Until(d.at))
		defer t.Stop()
		expire = t.C
	}
	select {
	case <-a:
		return woken
	case <-b:
		return woken
	case <-d.moved:
		return moved
	case <-expire:
		return expired
	}
}
