package peerstore

import "time"

// PruneInput is what Prunable needs to know of a peer's record.
type PruneInput struct {
	Connected  bool // a link to the peer is open
	Dialing    bool // a dial to the peer is in flight
	Persistent bool // the peer is to be kept connected
	Protected  bool // the application protects the peer
	// LastActive is when the record was last in use: whatever the
	// manager counts as activity, such as the last link closing.
	LastActive time.Time
}

// Prunable reports whether a peer's record may be dropped at now: none
// of in's flags holds and the record has been idle for at least
// retention. Until then the record stays, so that what it has learnt
// about the peer survives a disconnection.
func Prunable(in PruneInput, now time.Time, retention time.Duration) bool {
	if in.Connected || in.Dialing || in.Persistent || in.Protected {
		return false
	}
	return now.Sub(in.LastActive) >= retention
}
