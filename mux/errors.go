package mux

import (
	"errors"
	"fmt"
)

// Errors of the mux package. Every error the package returns for one of
// these conditions satisfies errors.Is with the matching sentinel.
var (
	// ErrProtocolNotSupported: the remote has no handler for the stream's
	// protocol (it reset the stream with code 1).
	ErrProtocolNotSupported = errors.New("mux: protocol not supported")
	// ErrStreamReset: the stream was aborted by a reset, by either side.
	// Errors that wrap it may also wrap the reason (ErrProtocolNotSupported,
	// ErrStreamLimit, ErrMalformedHeader, ErrGoAway, ErrHandlerFailed).
	ErrStreamReset = errors.New("mux: stream reset")
	// ErrStreamLimit: no stream slot was free, locally (OpenStream with
	// FailFastStreams, or wrapped with the context's error when its wait
	// for a slot ended; MaxStreams, ReservedStreams, GlobalSlots) or at
	// the remote (it reset the stream with code 2).
	ErrStreamLimit = errors.New("mux: stream limit reached")
	// ErrInvalidProtocol: a protocol name is empty, too long or contains a
	// byte other than printable ASCII without space.
	ErrInvalidProtocol = errors.New("mux: invalid protocol")
	// ErrInvalidPriority: a Priority outside low..critical.
	ErrInvalidPriority = errors.New("mux: invalid priority")
	// ErrSessionClosed: the session is closed. Session.Err returns it
	// itself after a local Close; stream operations wrap it (with the
	// cause) whenever the session has ended.
	ErrSessionClosed = errors.New("mux: session closed")
	// ErrMalformedHeader: a stream header could not be parsed, or did not
	// arrive within HeaderTimeout (the remote reset the stream with code 3).
	ErrMalformedHeader = errors.New("mux: malformed stream header")
	// ErrKeepAliveTimeout: the session ended because keepalive pings got
	// no answer.
	ErrKeepAliveTimeout = errors.New("mux: keepalive timeout")
	// ErrBackpressure: a Write found the session's write queue full
	// (Config.MaxQueuedBytes or MaxQueuedWrites) and Config.FailFast is
	// set; nothing was written.
	ErrBackpressure = errors.New("mux: write queue full")
	// ErrGoAway: the session is draining. OpenStream returns an error
	// wrapping it once either side has sent GoAway, and a stream the
	// remote refused because it had sent GoAway (it reset the stream with
	// code 5, before serving it) fails with a *ResetError wrapping it: the
	// stream can be opened again on another session.
	ErrGoAway = errors.New("mux: session going away")
	// ErrHandlerFailed: the remote's handler for the stream panicked (it
	// reset the stream with code 6).
	ErrHandlerFailed = errors.New("mux: stream handler failed")
	// ErrReceiverGone: data was sent on a stream whose remote end had
	// stopped reading it (its handler had returned); the remote reset the
	// stream with code 7 and discarded the data.
	ErrReceiverGone = errors.New("mux: stream's receiver is gone")
	// ErrProtocolViolation: the remote broke the protocol in a way that
	// costs this side resources (data for streams it was told were reset,
	// far beyond what could have been in flight; a stream ID opened twice;
	// a flood of pings); the session was ended.
	ErrProtocolViolation = errors.New("mux: protocol violation")
	// ErrMemoryBudget: a stream could not be opened because the node's
	// memory budget for stream buffers (NodeLimits) is spent. Errors that
	// wrap it also wrap ErrStreamLimit.
	ErrMemoryBudget = errors.New("mux: stream memory budget spent")
	// ErrWriteTimeout: a write to the link did not complete within
	// Config.WriteTimeout. Part of a frame may have gone, and crypto/tls
	// fails every write after a failed one, so the link is unusable and
	// the session ends: Session.Err wraps it, and so do the errors of the
	// stream operations from then on (with ErrSessionClosed). The text
	// names the remote and how long the write took.
	ErrWriteTimeout = errors.New("mux: link write timed out")
)

// ResetCode is the reason a stream was reset. peerlink carries it in the
// length field of the yamux RST frame (which yamux itself leaves zero).
type ResetCode uint32

// Reset codes on the wire.
const (
	// ResetUnknown is a reset without a peerlink code: yamux's own (accept
	// backlog exceeded, stream close timeout) or an unknown code.
	ResetUnknown ResetCode = 0
	// ResetProtocolNotSupported: no handler for the stream's protocol.
	ResetProtocolNotSupported ResetCode = 1
	// ResetStreamLimit: the acceptor's MaxStreams was reached.
	ResetStreamLimit ResetCode = 2
	// ResetMalformedHeader: the stream header was malformed or late.
	ResetMalformedHeader ResetCode = 3
	// ResetApplication: Stream.Reset was called.
	ResetApplication ResetCode = 4
	// ResetGoingAway: the acceptor had sent GoAway and served no new
	// streams; this one was never seen by a handler.
	ResetGoingAway ResetCode = 5
	// ResetHandlerFailed: the acceptor's handler panicked.
	ResetHandlerFailed ResetCode = 6
	// ResetReceiverGone: data arrived for a stream whose acceptor had
	// stopped reading it (its handler had returned); the data was
	// discarded.
	ResetReceiverGone ResetCode = 7

	// NumResetCodes is the number of known codes; SessionStats counts
	// resets in arrays of this size, indexed by code.
	NumResetCodes = 8
)

// String returns the code's name.
func (c ResetCode) String() string {
	switch c {
	case ResetUnknown:
		return "unknown"
	case ResetProtocolNotSupported:
		return "protocol not supported"
	case ResetStreamLimit:
		return "stream limit"
	case ResetMalformedHeader:
		return "malformed header"
	case ResetApplication:
		return "application reset"
	case ResetGoingAway:
		return "going away"
	case ResetHandlerFailed:
		return "handler failed"
	case ResetReceiverGone:
		return "receiver gone"
	}
	return fmt.Sprintf("reset code %d", uint32(c))
}

// bucket maps a code to its index in the SessionStats arrays: unknown
// codes count as ResetUnknown.
func (c ResetCode) bucket() int {
	if c < NumResetCodes {
		return int(c)
	}
	return int(ResetUnknown)
}

func (c ResetCode) sentinel() error {
	switch c {
	case ResetProtocolNotSupported:
		return ErrProtocolNotSupported
	case ResetStreamLimit:
		return ErrStreamLimit
	case ResetMalformedHeader:
		return ErrMalformedHeader
	case ResetGoingAway:
		return ErrGoAway
	case ResetHandlerFailed:
		return ErrHandlerFailed
	case ResetReceiverGone:
		return ErrReceiverGone
	}
	return nil
}

// ResetError is the error a Stream's Read and Write return once the
// stream was reset. errors.Is(err, ErrStreamReset) holds, and so does
// errors.Is with the code's own sentinel (ErrProtocolNotSupported for
// code 1, ErrStreamLimit for 2, ErrMalformedHeader for 3, ErrGoAway for
// 5, ErrHandlerFailed for 6).
type ResetError struct {
	Code     ResetCode // why; ResetUnknown when the reset carried no code
	Remote   bool      // reset by the remote (false: by a local Reset)
	Protocol string    // the stream's protocol, if known
}

func (e *ResetError) Error() string {
	who := "by remote"
	if !e.Remote {
		who = "locally"
	}
	proto := ""
	if e.Protocol != "" {
		proto = fmt.Sprintf(" %q", e.Protocol)
	}
	if e.Code == ResetUnknown || (e.Code == ResetApplication && !e.Remote) {
		return fmt.Sprintf("mux: stream%s reset %s", proto, who)
	}
	return fmt.Sprintf("mux: stream%s reset %s: %s", proto, who, e.Code)
}

// Is reports whether target is ErrStreamReset or the code's sentinel.
func (e *ResetError) Is(target error) bool {
	if target == ErrStreamReset {
		return true
	}
	s := e.Code.sentinel()
	return s != nil && target == s
}
