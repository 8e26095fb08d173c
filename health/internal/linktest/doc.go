// Package linktest holds tests of health checking over real links (two
// connection managers over in-memory links, in virtual time). It has no
// code: the tests are here for a test binary of their own. yamux keeps a
// process-wide pool of timers, and a timer made in a synctest bubble must
// not reach a goroutine outside it: in the root package's binary, the
// stream close timers (StreamCloseTimeout, 30 s) left running by its
// real-time tests fire outside any bubble and would take one (fatal:
// "reset of synctest timer from outside bubble"), the more likely the
// longer the bubbles run.
package linktest
