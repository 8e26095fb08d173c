package balancer

import (
	"errors"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// ErrNoCandidate is returned by Pick when no candidate is eligible: the
// slice is empty, or every candidate is unhealthy or has an open circuit.
var ErrNoCandidate = errors.New("balancer: no healthy candidate")

// Candidate is one peer as a strategy sees it: a snapshot of values the
// manager loaded atomically just before the pick. Candidates are passed by
// slice and read in place, so building the slice is the caller's only
// cost; a caller on a hot path can reuse the slice from pick to pick.
type Candidate struct {
	// ID identifies the peer.
	ID peer.ID
	// Score is the peer's quality in [0, 1], 1 best. It should already
	// reflect the peer's recent errors: P2C uses it as its error penalty.
	// Values outside [0, 1] (and NaN) are clamped; NaN counts as 0.
	Score float64
	// Load is the work outstanding on the peer: open streams plus
	// requests in flight. Negative values count as 0.
	Load int
	// Latency is the peer's peak-EWMA round-trip time; 0 (or less) means
	// no sample yet.
	Latency time.Duration
	// Healthy is false when the health checker considers the peer down.
	Healthy bool
	// CircuitOpen is true while the peer's circuit breaker refuses calls.
	CircuitOpen bool
}

// Eligible reports whether a strategy may pick c: healthy and with its
// circuit not open.
func (c *Candidate) Eligible() bool { return c.Healthy && !c.CircuitOpen }

// Strategy picks one candidate.
//
// Pick returns the index in cands of the candidate it chose, or
// ErrNoCandidate if none is eligible (see the package documentation).
// key matters only to key-based strategies (Rendezvous); the others
// ignore it and accept nil. Pick does not modify cands or retain it, and
// does not allocate. Implementations are safe for concurrent use.
type Strategy interface {
	Pick(cands []Candidate, key []byte) (int, error)
	// Name is a short, stable name for logs and metrics, such as "p2c".
	Name() string
}

// score returns c's score clamped to [0, 1], NaN as 0.
func (c *Candidate) score() float64 {
	s := c.Score
	if !(s > 0) { // also NaN
		return 0
	}
	return min(s, 1)
}

// load returns c's load, negative as 0.
func (c *Candidate) load() int { return max(c.Load, 0) }

// latencyRank orders latencies for tie-breaks: known latencies by value,
// an unknown one after every known one.
func latencyRank(d time.Duration) time.Duration {
	if d <= 0 {
		return math.MaxInt64
	}
	return d
}

// golden is 2⁶⁴/φ, splitmix64's increment.
const golden = 0x9e3779b97f4a7c15

// mix64 is splitmix64's finalizer (Stafford's variant 13): a bijection on
// uint64 with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// rng is a counter-based splitmix64 generator: each draw is one atomic add
// and a mix, so it is safe for concurrent use with no lock, and a given
// seed gives the same sequence every run.
type rng struct {
	seed uint64
	ctr  atomic.Uint64
}

func (r *rng) next() uint64 {
	return mix64(r.seed + r.ctr.Add(1)*golden)
}

// below returns a number in [0, n) from x (Lemire's multiply-shift; the
// bias, n/2⁶⁴, is far below anything a balancer could notice). n > 0.
func below(x uint64, n int) int {
	hi, _ := bits.Mul64(x, uint64(n))
	return int(hi)
}

// Set is a candidate set read on demand: At(i) builds candidate i when a
// strategy reads it. A manager with thousands of peers hands its peers
// as a Set, so that a strategy that draws (P2C, LeastLoadedOfTwo,
// RoundRobin) reads two or three of them instead of the manager loading
// every one. At must be cheap, safe for concurrent use, and consistent
// enough within one pick (a value loaded twice may have moved a little).
type Set interface {
	Len() int
	At(i int) Candidate
}

// SetPicker is implemented by strategies that pick from a Set reading
// only the candidates they draw. Its PickSet follows the same rules as
// Pick and picks as Pick would from the Set's candidates.
type SetPicker interface {
	PickSet(set Set, key []byte) (int, error)
}

// PickFrom picks from set with s: through PickSet if s is a SetPicker,
// else by loading every candidate into buf (grown as needed and returned
// for reuse) and calling Pick.
func PickFrom(s Strategy, set Set, key []byte, buf []Candidate) (int, []Candidate, error) {
	if sp, ok := s.(SetPicker); ok {
		i, err := sp.PickSet(set, key)
		return i, buf, err
	}
	buf = buf[:0]
	for i := range set.Len() {
		buf = append(buf, set.At(i))
	}
	i, err := s.Pick(buf, key)
	return i, buf, err
}

// eligibles is what the draws read of a candidate set: a slice, or a Set
// whose candidates are built as they are read.
type eligibles interface {
	Len() int
	Eligible(i int) bool
}

type slice []Candidate

func (s slice) Len() int            { return len(s) }
func (s slice) Eligible(i int) bool { return s[i].Eligible() }

// lazy reads a Set's candidates as the draws ask for them.
type lazy struct{ s Set }

func (l lazy) Len() int { return l.s.Len() }
func (l lazy) Eligible(i int) bool {
	c := l.s.At(i)
	return c.Eligible()
}

// nextEligible returns the first eligible index at or after start,
// wrapping around, skipping skip (use -1 for none), or -1 if there is none.
func nextEligible[E eligibles](cands E, start, skip int) int {
	n := cands.Len()
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		if i != skip && cands.Eligible(i) {
			return i
		}
	}
	return -1
}

// randomTries bounds the rejection sampling of randomEligible before it
// falls back to a scan: with half the candidates ineligible, 16 misses in
// a row happen once in 65,536 picks.
const randomTries = 16

// randomEligible returns a uniformly random eligible index other than
// skip (-1 for none), or -1 if there is none. It draws up to randomTries
// indexes and keeps the first eligible one — uniform and O(1) expected
// while most candidates are eligible — then falls back to the next
// eligible index after the last draw, which costs a scan and slightly
// favours candidates just after a run of ineligible ones.
func randomEligible[E eligibles](r *rng, cands E, skip int) int {
	n := cands.Len()
	if skip >= 0 {
		n-- // draw among the others, then step over skip
	}
	if n <= 0 {
		return -1
	}
	i := 0
	for t := 0; t < randomTries; t++ {
		i = below(r.next(), n)
		if skip >= 0 && i >= skip {
			i++
		}
		if cands.Eligible(i) {
			return i
		}
	}
	return nextEligible(cands, i, skip)
}
