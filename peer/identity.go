package peer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Identity is a node's ed25519 key pair. Its ID is what other nodes dial
// and what the TLS handshake proves.
type Identity struct {
	priv ed25519.PrivateKey
	id   ID
}

// GenerateIdentity creates a new identity from crypto/rand.
func GenerateIdentity() (*Identity, error) {
	return GenerateIdentityFrom(rand.Reader)
}

// GenerateIdentityFrom creates a new identity from the given randomness;
// tests and simulations pass a seeded reader to get repeatable IDs.
func GenerateIdentityFrom(r io.Reader) (*Identity, error) {
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("peer: generate ed25519 key: %w", err)
	}
	return IdentityFromKey(priv)
}

// IdentityFromKey wraps an existing ed25519 private key. The identity
// keeps its own copy, so the caller may reuse or wipe priv afterwards.
func IdentityFromKey(priv ed25519.PrivateKey) (*Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("peer: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	// An ed25519.PrivateKey is seed || public key, and Public returns the
	// second half unchecked. Signatures come from the seed alone, so a key
	// whose halves disagree (a corrupt file, a hand-assembled slice) would
	// give an ID that its own TLS certificate then fails to prove. Derive
	// the key from the seed and require the stored half to match.
	own := ed25519.NewKeyFromSeed(priv.Seed())
	if !bytes.Equal(own[ed25519.SeedSize:], priv[ed25519.SeedSize:]) {
		return nil, errors.New("peer: private key's public half does not match its seed")
	}
	id, err := IDFromPublicKey(own.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &Identity{priv: own, id: id}, nil
}

// ID returns the identity's peer ID.
func (i *Identity) ID() ID { return i.id }

// PrivateKey returns the identity's private key. Callers must not modify it.
func (i *Identity) PrivateKey() ed25519.PrivateKey { return i.priv }

// PublicKey returns the identity's public key.
func (i *Identity) PublicKey() ed25519.PublicKey { return i.priv.Public().(ed25519.PublicKey) }
