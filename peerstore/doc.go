// Package peerstore holds the parts of a peer's long-lived record that
// are pure logic. A ConnectionManager keeps one record per peer that
// outlives the peer's links, so that what it has learnt survives a
// re-dial: the AddrBook of where the peer may be dialed, with each
// address's source and time to live; the History of its round trips,
// errors and links; and Prunable, the rule for when the record may go.
//
// Nothing here reads a clock or starts a goroutine: every method that
// needs the time takes it as a parameter, so a simulation drives these
// types with its own clock and repeats itself. They are not safe for
// concurrent use; the manager holds them under the peer's own lock.
//
// A manager keeps records by the thousand, so they are kept small. An
// AddrBook is a slice, not a map, of at most MaxAddrs addresses, and both
// types store instants as 8-byte nanosecond counts rather than 24-byte
// time.Time values. Those drop the monotonic clock reading, so a step of
// the system's wall clock shows in durations derived from them, and the
// times they hand back are in UTC.
//
// It imports nothing from the rest of peerlink.
package peerstore
