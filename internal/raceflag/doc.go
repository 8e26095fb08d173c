// Package raceflag tells whether the binary was built with the race
// detector, for the tests that must work around its limits.
//
// The one known so far: under Go 1.26's race detector, all the timers of
// a testing/synctest bubble share one race context
// (runtime.synctestBubble.timers.raceCtx), and a timer that is due when
// its select starts is run inline by whichever thread reached it
// (runtime.(*timer).maybeRunChan). Two threads running a bubble's timers
// at once then use one race context together, which corrupts the race
// runtime: SIGSEGV in __tsan::SlotLock, or "ThreadSanitizer: CHECK
// failed", about one run in three of the simulation package's tests,
// always at a yamux Read whose deadline had passed. Tests that run large
// bubbles under the race detector therefore run them with GOMAXPROCS 1
// (see Bubble): the race detector still sees every unsynchronized access,
// as it works from happens-before, not from parallelism.
package raceflag

import "runtime"

// Bubble prepares the running of a testing/synctest bubble: under the
// race detector it sets GOMAXPROCS to 1 and returns a function that
// restores it; otherwise it does nothing. Use it as
// defer raceflag.Bubble()().
func Bubble() (restore func()) {
	if !Enabled {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(1)
	return func() { runtime.GOMAXPROCS(prev) }
}
