package peer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base32"
	"errors"
	"fmt"
)

// IDLen is the length of an ID in bytes: the size of an ed25519 public key.
const IDLen = ed25519.PublicKeySize

// idTextLen is the length of an ID's text form: 32 bytes in unpadded base32.
const idTextLen = 52

// idEncoding is lower-case, unpadded base32: case-insensitive to parse,
// safe in file names, URLs and DNS labels, and 52 characters long.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrInvalidID is returned (wrapped, with the reason) when text or bytes do
// not form a valid ID.
var ErrInvalidID = errors.New("peer: invalid ID")

// ID identifies a peer. It is the peer's ed25519 public key itself, so a
// connection can check the key a remote proves against the ID it dialed
// without a lookup. ID is comparable and may be used as a map key; its
// zero value is no valid peer.
type ID [IDLen]byte

// IDFromPublicKey returns the ID of an ed25519 public key.
func IDFromPublicKey(pub ed25519.PublicKey) (ID, error) {
	var id ID
	if len(pub) != IDLen {
		return id, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidID, len(pub), IDLen)
	}
	copy(id[:], pub)
	if id.IsZero() {
		return id, fmt.Errorf("%w: all-zero public key", ErrInvalidID)
	}
	return id, nil
}

// IDFromBytes returns the ID whose binary form is b.
func IDFromBytes(b []byte) (ID, error) {
	return IDFromPublicKey(ed25519.PublicKey(b))
}

// ParseID parses the text form produced by String. Upper-case letters are
// accepted, so an ID survives case-folding systems such as DNS.
func ParseID(s string) (ID, error) {
	if len(s) != idTextLen {
		return ID{}, fmt.Errorf("%w: %q is %d characters, want %d", ErrInvalidID, truncate(s), len(s), idTextLen)
	}
	// Check and lower-case byte by byte rather than hand the string to the
	// base32 decoder as is: the decoder silently skips '\r' and '\n', and
	// strings.ToLower can change a non-ASCII string's length, either of
	// which would make the reported offset of a bad character wrong.
	var text [idTextLen]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return ID{}, fmt.Errorf("%w: %q has a character outside base32 (a-z, 2-7) at offset %d", ErrInvalidID, s, i)
		}
		text[i] = c
	}
	var id ID
	if n, err := idEncoding.Decode(id[:], text[:]); err != nil || n != IDLen {
		// Unreachable after the checks above; kept so that a change of
		// encoding cannot turn into a silently short ID.
		return ID{}, fmt.Errorf("%w: %q does not decode to %d bytes (%d, %v)", ErrInvalidID, s, IDLen, n, err)
	}
	// 52 base32 characters carry 260 bits; the last 4 must be zero or 16
	// texts would name one ID.
	var canon [idTextLen]byte
	idEncoding.Encode(canon[:], id[:])
	if canon != text {
		return ID{}, fmt.Errorf("%w: %q is not in canonical form (non-zero trailing bits)", ErrInvalidID, s)
	}
	if id.IsZero() {
		return ID{}, fmt.Errorf("%w: all-zero ID", ErrInvalidID)
	}
	return id, nil
}

// MustParseID is ParseID for tests and constants; it panics on error.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// truncate shortens s for an error message, so that a caller who passes a
// whole file by mistake does not get it back in the error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// String returns the 52-character text form of the ID.
func (id ID) String() string {
	return idEncoding.EncodeToString(id[:])
}

// ShortString returns the first 10 characters of the text form: enough to
// tell peers apart in logs and tables, not to identify them.
func (id ID) ShortString() string {
	return id.String()[:10]
}

// MarshalText implements encoding.TextMarshaler. The zero ID is an error,
// not text: it names no peer, and ParseID would refuse it on the way back.
func (id ID) MarshalText() ([]byte, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("%w: cannot marshal the zero ID", ErrInvalidID)
	}
	return []byte(id.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// PublicKey returns the ed25519 public key the ID stands for.
func (id ID) PublicKey() ed25519.PublicKey {
	k := make(ed25519.PublicKey, IDLen)
	copy(k, id[:])
	return k
}

// IsZero reports whether id is the zero value, which names no peer.
func (id ID) IsZero() bool {
	return id == ID{}
}

// Compare orders IDs by their bytes: -1 if id < other, 0 if equal, +1 if
// id > other. Tie-breaks between two peers (who keeps which link) use it.
func (id ID) Compare(other ID) int {
	return bytes.Compare(id[:], other[:])
}

// Less reports whether id orders before other.
func (id ID) Less(other ID) bool {
	return id.Compare(other) < 0
}
