// Package clock holds the two sources of nondeterminism a
// ConnectionManager draws on, time and randomness, behind values it is
// handed rather than the time and math/rand/v2 globals. A simulation that
// injects a Fake clock and a Rand with a fixed seed therefore repeats
// itself run after run, and a test can move time by hand instead of
// sleeping.
//
// Clock is the time source: Real delegates to the time package, and Fake
// is a manual clock whose time moves only when Advance or Set is called.
// A Fake fires its timers in deadline order, and runs the functions of
// AfterFunc timers synchronously in the goroutine that advances it, so
// the order of everything a clock event triggers is fixed too.
//
// Rand is a concurrency-safe random source over a math/rand/v2 Source,
// with the few draws the manager needs: uniform integers and durations,
// and jitter in the style of exponential backoff's randomization factor.
//
// It imports nothing from the rest of peerlink.
package clock
