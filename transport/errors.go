package transport

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Errors returned by this package wrap them (test with
// errors.Is); their text carries the details, e.g. both network names.
var (
	// ErrPeerIDMismatch: the remote proved a key other than the ID the
	// dialer expected.
	ErrPeerIDMismatch = errors.New("transport: peer ID mismatch")
	// ErrNetworkMismatch: the remote belongs to another network (Config.Network).
	ErrNetworkMismatch = errors.New("transport: network mismatch")
	// ErrGated: our own Gater refused the link. The gater's error is
	// wrapped too.
	ErrGated = errors.New("transport: gated")
	// ErrRemoteRefused: the listener's admission verdict refused the link.
	// The error is a *RemoteRefusedError carrying the code and reason.
	ErrRemoteRefused = errors.New("transport: remote refused the link")
	// ErrHandshakeTimeout: the handshake and verdict exchange did not finish
	// within Config.HandshakeTimeout; on the listening side also an
	// inbound socket that sent nothing within Config.FirstByteTimeout.
	ErrHandshakeTimeout = errors.New("transport: handshake timeout")
	// ErrInvalidConfig: NewTCP or NewTransport got a bad Config; the text
	// names the field.
	ErrInvalidConfig = errors.New("transport: invalid config")

	// ErrCertificateRejected: the remote aborted the TLS handshake with a
	// certificate alert, i.e. its own checks refused our certificate (we
	// are not the peer it expected, or our certificate does not meet its
	// rules). TLS does not tell which; the remote's own error names it.
	ErrCertificateRejected = errors.New("transport: remote rejected our certificate")
	// ErrInvalidCertificate: the remote's TLS certificate breaks the
	// rules (not exactly one, not ed25519, not self-signed, outside its
	// validity, no network) or it sent none.
	ErrInvalidCertificate = errors.New("transport: invalid peer certificate")
	// ErrProtocol: the remote sent a malformed admission verdict or
	// memory hello, or one of another version, or does not speak TLS 1.3
	// with ALPN "peerlink/1".
	ErrProtocol = errors.New("transport: protocol violation")
	// ErrNoListener: a Memory dial to an address nobody listens on. The
	// error also wraps syscall.ECONNREFUSED, like a refused TCP dial.
	ErrNoListener = errors.New("transport: no listener at address")
	// ErrListenerBusy: the listener refused the connection before the
	// handshake because it had no room for another pending handshake
	// (Config.MaxPendingHandshakes, MaxPendingPerIP, MaxPendingPerSubnet)
	// and none of those it held could be evicted. Nothing is wrong with
	// the dialer or the listener: try again later. The error is a
	// *ListenerRefusedError naming the listener.
	ErrListenerBusy = errors.New("transport: listener busy")
	// ErrAddrConnLimit: the listener has as many links from the dialer's
	// address as it allows (Config.MaxInboundPerIP). Dials get it as a
	// *ListenerRefusedError (refused before the handshake) or, if the
	// limit was reached during the handshake, as a *RemoteRefusedError
	// with code RefusalAddrLimit; the listener's own errors wrap it too.
	ErrAddrConnLimit = errors.New("transport: too many connections from one address")
)

// errConnRefused is wrapped next to ErrNoListener.
var errConnRefused error = syscall.ECONNREFUSED

// RefusalCode is the code of an admission verdict that refuses a link.
// Zero is not a refusal: on the wire it means "accepted".
type RefusalCode uint8

// Refusal codes, as sent in the admission verdict.
const (
	RefusalGated     RefusalCode = 1   // the listener's gater refused (default)
	RefusalLimit     RefusalCode = 2   // a resource limit (connections, memory)
	RefusalDuplicate RefusalCode = 3   // a link to this peer exists already
	RefusalClosing   RefusalCode = 4   // the listener's node is shutting down
	RefusalAddrLimit RefusalCode = 5   // too many links from the dialer's address (Config.MaxInboundPerIP)
	RefusalOther     RefusalCode = 255 // anything else
)

// String returns a short lower-case name: "gated", "resource limit",
// "duplicate link", "closing", "address limit", "other", or
// "refusal(N)" for codes this version does not know.
func (c RefusalCode) String() string {
	switch c {
	case RefusalGated:
		return "gated"
	case RefusalLimit:
		return "resource limit"
	case RefusalDuplicate:
		return "duplicate link"
	case RefusalClosing:
		return "closing"
	case RefusalAddrLimit:
		return "address limit"
	case RefusalOther:
		return "other"
	}
	return "refusal(" + strconv.Itoa(int(c)) + ")"
}

// RefusalError lets a Gater choose the code the listener sends to the
// dialer. Return it from InterceptSecured (through Refuse, possibly
// wrapped further); without one the code is RefusalGated. The text of
// the whole error the gater returned becomes the verdict's reason.
type RefusalError struct {
	Code RefusalCode
	Err  error
}

// Refuse returns a *RefusalError with the given code and cause. A zero
// code is sent as RefusalGated.
func Refuse(code RefusalCode, err error) error {
	return &RefusalError{Code: code, Err: err}
}

// Error returns the cause's text (that is what the dialer reads as the
// reason), or "refused: <code>" without a cause.
func (e *RefusalError) Error() string {
	if e.Err == nil {
		return "refused: " + e.code().String()
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *RefusalError) Unwrap() error { return e.Err }

func (e *RefusalError) code() RefusalCode {
	if e.Code == 0 {
		return RefusalGated
	}
	return e.Code
}

// refusalOf turns a gater's error into the verdict to send.
func refusalOf(err error) (RefusalCode, string) {
	code := RefusalGated
	var re *RefusalError
	if errors.As(err, &re) {
		code = re.code()
	}
	return code, truncateReason(err.Error())
}

// maxReason is the longest reason a verdict carries.
const maxReason = 255

// truncateReason cuts s to maxReason bytes without splitting a UTF-8
// sequence.
func truncateReason(s string) string {
	if len(s) <= maxReason {
		return s
	}
	n := maxReason
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// sanitizeReason makes a reason received from the network safe to print:
// invalid UTF-8 and control characters become U+FFFD.
func sanitizeReason(b []byte) string {
	clean := true
	for _, r := range string(b) {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	var sb strings.Builder
	for _, r := range string(b) {
		if unicode.IsControl(r) {
			r = utf8.RuneError
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// RemoteRefusedError is what Dial returns when the listener's verdict
// refuses the link. errors.Is(err, ErrRemoteRefused) holds for it.
type RemoteRefusedError struct {
	Code   RefusalCode
	Reason string // the listener gater's error text; may be empty
}

// Error reads like "transport: remote refused the link (resource limit): too many links".
func (e *RemoteRefusedError) Error() string {
	s := ErrRemoteRefused.Error() + " (" + e.Code.String() + ")"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is reports whether target is ErrRemoteRefused, or ErrAddrConnLimit
// for code RefusalAddrLimit.
func (e *RemoteRefusedError) Is(target error) bool {
	return target == ErrRemoteRefused || target == ErrAddrConnLimit && e.Code == RefusalAddrLimit
}
