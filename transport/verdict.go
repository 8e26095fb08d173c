package transport

import (
	"errors"
	"fmt"
	"io"
)

// The admission verdict, listener to dialer, right after the security
// handshake:
//
//	[1] version = 1
//	[1] code    (0 accepted, else a RefusalCode)
//	[1] n       reason length (0..255)
//	[n] reason  UTF-8 text
const (
	verdictVersion   = 1
	verdictHeaderLen = 3
	maxVerdictLen    = verdictHeaderLen + maxReason
)

// appendVerdict appends the encoding of a verdict to b. code 0 accepts;
// the reason is cut to 255 bytes.
func appendVerdict(b []byte, code RefusalCode, reason string) []byte {
	reason = truncateReason(reason)
	b = append(b, verdictVersion, byte(code), byte(len(reason)))
	return append(b, reason...)
}

// writeVerdict sends a verdict in one Write.
func writeVerdict(w io.Writer, code RefusalCode, reason string) error {
	var buf [maxVerdictLen]byte
	_, err := w.Write(appendVerdict(buf[:0], code, reason))
	return err
}

// readVerdict reads exactly one verdict from r (never more than 258
// bytes) and returns its code (0 accepted) and reason. Malformed input
// gives an error wrapping ErrProtocol; a clean end before the first byte
// gives io.EOF; other read errors are returned as they are.
func readVerdict(r io.Reader) (RefusalCode, string, error) {
	var buf [maxVerdictLen]byte
	hdr := buf[:verdictHeaderLen]
	if n, err := io.ReadFull(r, hdr); err != nil {
		switch {
		case errors.Is(err, io.EOF) && n == 0:
			return 0, "", io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return 0, "", fmt.Errorf("%w: truncated verdict: %d of %d header bytes", ErrProtocol, n, verdictHeaderLen)
		}
		return 0, "", err
	}
	if hdr[0] != verdictVersion {
		return 0, "", fmt.Errorf("%w: verdict version %d, want %d", ErrProtocol, hdr[0], verdictVersion)
	}
	code, n := RefusalCode(hdr[1]), int(hdr[2])
	reason := buf[verdictHeaderLen : verdictHeaderLen+n]
	if got, err := io.ReadFull(r, reason); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, "", fmt.Errorf("%w: truncated verdict: %d of %d reason bytes", ErrProtocol, got, n)
		}
		return 0, "", err
	}
	if code == 0 {
		// An accepting verdict's reason is ignored; there is none today.
		return 0, "", nil
	}
	return code, sanitizeReason(reason), nil
}
