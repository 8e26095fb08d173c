// Package peer defines who a peer is and where peers are kept: the ID
// (an ed25519 public key), the node's own Identity, AddrInfo for the
// address book, the connection Status, and Table, the sharded map that
// holds one entry per known peer.
//
// An ID's text form is 52 characters of lower-case, unpadded base32;
// ParseID also accepts upper case and rejects any other spelling, so one
// ID has exactly one canonical text. An Identity is saved with
// (*Identity).Save as a PKCS#8 PEM file of mode 0600 and read back with
// LoadIdentity or LoadOrCreateIdentity, which refuse a file others may
// read (ErrInsecureKeyFile) or a key of another algorithm (ErrNotEd25519).
//
// It imports nothing else from peerlink; every other package builds on it.
package peer
