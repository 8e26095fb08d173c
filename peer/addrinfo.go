package peer

import (
	"errors"
	"fmt"
	"strings"
)

// AddrInfo is what the address book knows about a peer: its ID and the
// addresses it may be reached at. Addresses are opaque to this package;
// their form belongs to the transport ("127.0.0.1:4001" for TCP, any name
// for the in-memory transport).
type AddrInfo struct {
	ID    ID
	Addrs []string
}

// String returns the ID and the addresses, as in
// "{<52-character ID>: [127.0.0.1:4001 10.0.0.1:4001]}", for logs.
func (a AddrInfo) String() string {
	var b strings.Builder
	b.WriteByte('{')
	if a.ID.IsZero() {
		// The zero ID's text form looks like a real ID; say what it is.
		b.WriteString("<zero ID>")
	} else {
		b.WriteString(a.ID.String())
	}
	b.WriteString(": [")
	b.WriteString(strings.Join(a.Addrs, " "))
	b.WriteString("]}")
	return b.String()
}

// Validate reports why a cannot be used to reach a peer: the zero ID names
// no peer, and an empty string is no address. An empty Addrs is valid; it
// means the peer's address is not known yet.
func (a AddrInfo) Validate() error {
	if a.ID.IsZero() {
		return errors.New("peer: AddrInfo has the zero ID")
	}
	for i, addr := range a.Addrs {
		if addr == "" {
			return fmt.Errorf("peer: AddrInfo for %s: address %d is empty", a.ID.ShortString(), i)
		}
	}
	return nil
}
