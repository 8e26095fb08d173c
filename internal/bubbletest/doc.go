// Package bubbletest holds the tests that run ConnectionManagers inside
// testing/synctest bubbles (virtual time over the in-memory transport):
// the dead-link detection times and the Linkerd selection experiment.
//
// They live in a test binary of their own because yamux keeps a
// process-wide pool of timers and starts a close timer (30 s) for every
// half-closed stream that it never stops when its session ends. In a
// binary that also runs real-time tests, such a timer can fire outside
// any bubble and take from the pool a timer a bubble left there, which
// is fatal ("reset of synctest timer from outside bubble"). Here every
// yamux session lives and dies inside a bubble.
package bubbletest
