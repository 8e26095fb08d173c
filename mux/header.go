package mux

import (
	"errors"
	"fmt"
	"io"
)

// Stream header, sent by the opener before any payload:
//
//	[1] version = 1
//	[1] priority (0..3)
//	[1] n = len(protocol), 1..MaxProtocolLen
//	[n] protocol, printable ASCII without space
const (
	headerVersion   = 1
	headerFixedLen  = 3
	maxStreamHeader = headerFixedLen + MaxProtocolLen
)

// appendStreamHeader appends the header for a valid protocol and priority.
func appendStreamHeader(b []byte, prio Priority, protocol string) []byte {
	b = append(b, headerVersion, byte(prio), byte(len(protocol)))
	return append(b, protocol...)
}

// errNoHeader: the stream ended cleanly before the first header byte (an
// opener that gave up before sending anything); not a protocol error.
var errNoHeader = errors.New("mux: stream ended before its header")

// readStreamHeader reads and validates one stream header from r, reading
// no byte beyond it. buf is scratch space. Malformed input yields an error
// wrapping ErrMalformedHeader; I/O errors are returned as they are, except
// io.EOF before the first byte (errNoHeader) and io.EOF inside the header
// (malformed).
func readStreamHeader(r io.Reader, buf *[maxStreamHeader]byte) (Priority, string, error) {
	n, err := io.ReadFull(r, buf[:headerFixedLen])
	if err != nil {
		if n == 0 && err == io.EOF {
			return 0, "", errNoHeader
		}
		if err == io.ErrUnexpectedEOF {
			return 0, "", fmt.Errorf("%w: stream ended after %d bytes", ErrMalformedHeader, n)
		}
		return 0, "", err
	}
	prio, plen, err := checkFixedHeader(buf[0], buf[1], buf[2])
	if err != nil {
		return 0, "", err
	}
	n, err = io.ReadFull(r, buf[headerFixedLen:headerFixedLen+plen])
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return 0, "", fmt.Errorf("%w: stream ended inside the protocol name (%d of %d bytes)", ErrMalformedHeader, n, plen)
		}
		return 0, "", err
	}
	proto := buf[headerFixedLen : headerFixedLen+plen]
	if err := validateProtocolBytes(proto); err != nil {
		return 0, "", fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	return prio, string(proto), nil
}

// parseStreamHeader parses a header at the start of b and returns how many
// bytes it took. It is readStreamHeader for a byte slice (tests and fuzzing).
func parseStreamHeader(b []byte) (Priority, string, int, error) {
	if len(b) < headerFixedLen {
		return 0, "", 0, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformedHeader, len(b), headerFixedLen)
	}
	prio, plen, err := checkFixedHeader(b[0], b[1], b[2])
	if err != nil {
		return 0, "", 0, err
	}
	if len(b) < headerFixedLen+plen {
		return 0, "", 0, fmt.Errorf("%w: protocol name cut short (%d of %d bytes)", ErrMalformedHeader, len(b)-headerFixedLen, plen)
	}
	proto := b[headerFixedLen : headerFixedLen+plen]
	if err := validateProtocolBytes(proto); err != nil {
		return 0, "", 0, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	return prio, string(proto), headerFixedLen + plen, nil
}

func checkFixedHeader(version, prio, plen byte) (Priority, int, error) {
	if version != headerVersion {
		return 0, 0, fmt.Errorf("%w: version %d, want %d", ErrMalformedHeader, version, headerVersion)
	}
	if !Priority(prio).Valid() {
		return 0, 0, fmt.Errorf("%w: %w %d", ErrMalformedHeader, ErrInvalidPriority, prio)
	}
	if plen == 0 || int(plen) > MaxProtocolLen {
		return 0, 0, fmt.Errorf("%w: protocol length %d, want 1..%d", ErrMalformedHeader, plen, MaxProtocolLen)
	}
	return Priority(prio), int(plen), nil
}

// validateProtocolBytes is ValidateProtocol for a byte slice, without
// converting it to a string unless it is invalid.
func validateProtocolBytes(p []byte) error {
	if len(p) == 0 || len(p) > MaxProtocolLen {
		return ValidateProtocol(string(p))
	}
	for _, c := range p {
		if c < 0x21 || c > 0x7e {
			return ValidateProtocol(string(p))
		}
	}
	return nil
}
