// Package breaker keeps one circuit breaker per peer, so that a node stops
// dialing a peer that keeps failing and tries it again only now and then.
//
// The connection manager sends every dial to a peer through that peer's
// circuit with Registry.Execute. Without it, a validator that has gone
// down would be redialed in a tight loop by every node that wants it,
// each dial costing a socket, a TLS handshake attempt and a timeout. The
// circuit is per peer because health is per peer: one dead validator must
// not stop dials to the live ones.
//
// A circuit starts closed and lets dials through. After
// Settings.FailureThreshold failures in a row (5 by default; exactly the
// 5th opens it) it opens and refuses dials at once, without calling the
// dial function, with an *OpenError that wraps ErrOpen and says when the
// circuit will let a dial through again. After Settings.OpenTimeout it is
// half-open: it lets one trial dial through (Settings.HalfOpenMaxRequests),
// refuses the rest, closes if the trial succeeds and re-opens for another
// OpenTimeout if it fails. So a dead peer costs one dial per OpenTimeout,
// and a peer that comes back is dialed again within one OpenTimeout.
//
// Some errors say nothing about the peer: the caller cancelling its
// context, a gater refusing the dial, the manager closing. Those are
// excluded (Settings.IsExcluded; context.Canceled always is): they count
// neither as failure nor as success, so they do not open a circuit, do not
// reset its run of failures, and do not close a half-open one; a half-open
// circuit whose trial ends with an excluded error gives the trial slot
// back and stays half-open.
//
// The circuits are github.com/sony/gobreaker/v2 breakers, which start no
// goroutines and keep no timers: an open circuit becomes half-open when
// it is next looked at (Execute, State or Counts) after OpenTimeout.
// gobreaker reads the real clock; the Registry times the open state and
// the closed-state window itself on Settings.Clock, so that a fake or
// simulated clock drives them (see Registry). A
// circuit costs about 440 bytes of heap, table entry included
// (BenchmarkCircuitMemory measures it), and is created on a peer's first
// dial, so a large peer table costs nothing for peers never dialed;
// Remove forgets a peer.
//
// State changes can be observed with the onChange function given to
// NewRegistry, which runs synchronously inside the breaker and must not
// block or call back into the Registry.
package breaker
