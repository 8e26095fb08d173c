package balancer

import "sync/atomic"

// RoundRobin picks candidates in turn: each Pick advances a shared counter
// and returns the first eligible candidate at or after counter mod n. The
// caller should keep the slice in a stable order (say, by ID) from pick to
// pick, or the turns mean little.
//
// An ineligible candidate is skipped by stepping forward to the next
// eligible one, so in the common case — few peers down — a pick reads one
// or two candidates, and only a slice with no eligible candidate is
// scanned whole (then Pick returns ErrNoCandidate). The price is that the
// candidate after a run of k ineligible ones takes their turns too, k + 1
// in all. The zero value is ready to use.
type RoundRobin struct {
	next atomic.Uint64
}

// NewRoundRobin returns a RoundRobin starting at index 0.
func NewRoundRobin() *RoundRobin { return new(RoundRobin) }

// Name returns "round_robin".
func (*RoundRobin) Name() string { return "round_robin" }

// Pick returns the next eligible candidate in turn.
func (r *RoundRobin) Pick(cands []Candidate, _ []byte) (int, error) {
	n := len(cands)
	if n == 0 {
		return -1, ErrNoCandidate
	}
	start := int((r.next.Add(1) - 1) % uint64(n))
	if cands[start].Eligible() {
		return start, nil
	}
	if i := nextEligible(slice(cands), start, -1); i >= 0 {
		return i, nil
	}
	return -1, ErrNoCandidate
}

// PickSet is Pick over a Set, reading candidates from the turn's on
// until one is eligible.
func (r *RoundRobin) PickSet(set Set, _ []byte) (int, error) {
	n := set.Len()
	if n == 0 {
		return -1, ErrNoCandidate
	}
	start := int((r.next.Add(1) - 1) % uint64(n))
	if i := nextEligible(lazy{set}, start, -1); i >= 0 {
		return i, nil
	}
	return -1, ErrNoCandidate
}
