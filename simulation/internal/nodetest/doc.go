// Package nodetest holds the tests of simulation.RunNode over real TCP
// and TLS. It has no code: the tests are here for a test binary of their
// own. yamux keeps a process-wide pool of timers, and a timer made in a
// synctest bubble must not reach a goroutine outside it: the stream close
// timers that real-time sessions leave running fire later, outside any
// bubble, and in the simulation package's binary (whose other tests run
// in bubbles) they took a bubble's timer from the pool: "fatal error:
// reset of synctest timer from outside bubble" (seen in CI). See
// ../shared/notes/yamux-and-synctest.md, pitfall 1.
package nodetest
