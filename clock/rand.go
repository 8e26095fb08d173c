package clock

import (
	crand "crypto/rand"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Rand is a concurrency-safe wrapper over a math/rand/v2 Source. Given a
// Source with a fixed seed, it yields the same sequence every run, as
// long as its callers draw in the same order.
type Rand struct {
	mu sync.Mutex
	r  *rand.Rand
}

// NewRand returns a Rand drawing from src. A nil src means a PCG source
// seeded from crypto/rand, for a manager that need not repeat itself.
func NewRand(src rand.Source) *Rand {
	if src == nil {
		var seed [16]byte
		crand.Read(seed[:]) // never fails; see crypto/rand.Read
		src = rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))
	}
	return &Rand{r: rand.New(src)}
}

// Int64N returns a uniform number in [0, n). It panics if n <= 0.
func (r *Rand) Int64N(n int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Int64N(n)
}

// Uint64 returns a uniform 64-bit number (a seed for a generator of the
// caller's own).
func (r *Rand) Uint64() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Uint64()
}

// DurationN returns a uniform duration in [0, d), or 0 if d <= 0.
func (r *Rand) DurationN(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(d)))
}

// Float64 returns a uniform number in [0.0, 1.0).
func (r *Rand) Float64() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Float64()
}

// Jitter returns d moved by up to factor·d either way, uniformly: a value
// in [d − factor·d, d + factor·d], as the RandomizationFactor of
// cenkalti/backoff spreads its intervals, so that peers retrying after
// the same event do not retry in step. factor is capped to [0, 1], so the
// result is never negative; d <= 0 or factor <= 0 returns d unchanged.
func (r *Rand) Jitter(d time.Duration, factor float64) time.Duration {
	if d <= 0 || !(factor > 0) { // !(>) also catches NaN
		return d
	}
	factor = min(factor, 1)
	delta := factor * float64(d)
	v := float64(d) - delta + r.Float64()*2*delta
	if v >= math.MaxInt64 { // float64(MaxInt64) rounds up to 2⁶³
		return math.MaxInt64
	}
	return time.Duration(v)
}
