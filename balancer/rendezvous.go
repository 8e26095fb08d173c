package balancer

import (
	"encoding/binary"

	"github.com/peerlink/peerlink/peer"
)

// Rendezvous is highest-random-weight hashing: every eligible candidate
// gets a weight hashed from (key, its ID), and the highest weight wins.
// A key therefore keeps its peer for as long as that peer stays eligible,
// whatever the order of the slice and whatever other peers come and go;
// when one of n peers leaves, only the keys it held (about 1/n of them)
// move, each to its second-highest weight. Pick scans the slice (O(n)).
// Equal weights (a 2⁻⁶⁴ event) go to the lower ID. A nil key is the
// empty key. With no eligible candidate Pick returns ErrNoCandidate.
//
// The weight is FNV-1a 64 of the key, then four rounds of the splitmix64
// finalizer, each folding in one little-endian 64-bit word of the ID.
// Both are fixed, seedless functions, so every process, architecture and
// Go version computes the same weights and nodes agree on who holds a
// key; hash/maphash cannot promise that (its seeds are random and its
// output may change between releases). The key is hashed once per Pick,
// the ID in four multiply-xorshift steps per candidate, which keeps a
// pick over 10,000 candidates short. The weight is not a keyed hash: a
// peer that grinds its ID can aim at a key it knows in advance.
//
// The zero value is ready to use.
type Rendezvous struct{}

// NewRendezvous returns a Rendezvous.
func NewRendezvous() Rendezvous { return Rendezvous{} }

// Name returns "rendezvous".
func (Rendezvous) Name() string { return "rendezvous" }

// Pick returns the eligible candidate of highest weight for key.
func (Rendezvous) Pick(cands []Candidate, key []byte) (int, error) {
	hk := fnv1a64(key)
	best := -1
	var bestW uint64
	for i := range cands {
		c := &cands[i]
		if !c.Eligible() {
			continue
		}
		w := weight(hk, &c.ID)
		if best < 0 || w > bestW || (w == bestW && c.ID.Less(cands[best].ID)) {
			best, bestW = i, w
		}
	}
	if best < 0 {
		return -1, ErrNoCandidate
	}
	return best, nil
}

// Weight returns the rendezvous weight of id for key, for callers that
// want to rank all peers for a key (say, to pick replicas).
func Weight(key []byte, id peer.ID) uint64 { return weight(fnv1a64(key), &id) }

func weight(hk uint64, id *peer.ID) uint64 {
	h := mix64(hk ^ binary.LittleEndian.Uint64(id[0:8]))
	h = mix64(h ^ binary.LittleEndian.Uint64(id[8:16]))
	h = mix64(h ^ binary.LittleEndian.Uint64(id[16:24]))
	return mix64(h ^ binary.LittleEndian.Uint64(id[24:32]))
}

// fnv1a64 is FNV-1a, 64-bit, as hash/fnv computes it, without the
// interface value (and its allocation).
func fnv1a64(b []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return h
}
