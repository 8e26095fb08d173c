package clock

import "time"

// Clock is the time source of a ConnectionManager.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that sends the time on its channel after
	// at least d, like time.NewTimer.
	NewTimer(d time.Duration) Timer
	// AfterFunc returns a Timer that calls f after at least d, like
	// time.AfterFunc.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a single event, with the semantics of a *time.Timer from Go
// 1.23 on: after Stop or Reset returns, no value sent before the call is
// received from C.
type Timer interface {
	// C returns the channel the time is sent on when the timer fires; it
	// is nil for a timer made by AfterFunc.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped the timer, false if it had already fired (for a channel
	// timer: its value had been received) or been stopped.
	Stop() bool
	// Reset changes the timer to fire after d. It reports whether the
	// timer was still pending, as Stop does.
	Reset(d time.Duration) bool
}

// Real returns the Clock of the time package.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

// C returns t.C, which time.AfterFunc leaves nil.
func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
