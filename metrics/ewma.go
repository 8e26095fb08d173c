package metrics

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Decay returns the weight a value keeps after elapsed time under a
// half-life: 2^(−elapsed/halfLife), 1 for no or negative elapsed time.
func Decay(elapsed, halfLife time.Duration) float64 {
	if elapsed <= 0 {
		return 1
	}
	return math.Exp2(-float64(elapsed) / float64(halfLife))
}

// decay is Decay over nanoseconds.
func decay(elapsed, halfLife int64) float64 {
	return Decay(time.Duration(elapsed), time.Duration(halfLife))
}

// EWMA is a time-decayed mean: the mean of the samples, each weighted by
// 2^(−age/halfLife). Weights follow the time between samples, so
// irregular sampling is handled: a sample after a long silence outweighs
// the old ones, samples in a burst share the weight. It keeps the mean
// and the total weight rather than a bare moving average, so it is
// unbiased from the first sample (no warm-up from zero) and two samples
// taken at the same instant count alike.
//
// Make one with NewEWMA, or Init one embedded in a larger struct. It is
// safe for concurrent use: Observe takes a short mutex, Value is one
// atomic load. It must not be copied after first use.
type EWMA struct {
	mu       sync.Mutex
	halfLife int64 // nanoseconds
	mean     float64
	weight   float64
	at       int64 // UnixNano of the latest sample
	samples  uint64
	value    atomic.Uint64 // math.Float64bits(mean), for Value without the lock
}

// NewEWMA returns an EWMA with the given half-life, which must be
// positive.
func NewEWMA(halfLife time.Duration) *EWMA {
	e := new(EWMA)
	e.Init(halfLife)
	return e
}

// Init readies e with the given half-life, which must be positive,
// discarding any samples. It must not race with other methods.
func (e *EWMA) Init(halfLife time.Duration) {
	if halfLife <= 0 {
		panic("metrics: EWMA half-life must be positive")
	}
	e.halfLife = int64(halfLife)
	e.mean, e.weight, e.at, e.samples = 0, 0, 0, 0
	e.value.Store(0)
}

// Observe records sample v taken at now. A now earlier than the latest
// sample counts as the same instant.
func (e *EWMA) Observe(v float64, now time.Time) {
	n := now.UnixNano()
	e.mu.Lock()
	if e.samples == 0 {
		e.mean, e.weight, e.at = v, 1, n
	} else {
		e.weight = e.weight*decay(n-e.at, e.halfLife) + 1
		e.mean += (v - e.mean) / e.weight
		e.at = max(e.at, n)
	}
	e.samples++
	e.value.Store(math.Float64bits(e.mean))
	e.mu.Unlock()
}

// Value returns the mean as of the latest sample, 0 before any. It does
// not change between samples.
func (e *EWMA) Value() float64 { return math.Float64frombits(e.value.Load()) }

// Snapshot returns the state of e.
func (e *EWMA) Snapshot() EWMASnapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return EWMASnapshot{Value: e.mean, Samples: e.samples, At: e.at}
}

// EWMASnapshot is a copy of an EWMA's or PeakEWMA's state.
type EWMASnapshot struct {
	Value   float64 // as of At
	Samples uint64  // samples observed
	At      int64   // UnixNano of the latest sample; 0 if none
}

// PeakEWMA is Finagle's peak EWMA, as used by its and Linkerd's load
// balancers: a sample above the current value replaces it at once; a
// sample below pulls it down with the time-decay weight
// w = 2^(−Δt/halfLife): value = sample + (value − sample)·w. (Finagle
// states the decay as e^(−Δt/τ); halfLife = τ·ln 2, so τ = 10 s is a
// half-life of about 6.93 s.) A peer that has just been slow is shunned
// at once and forgiven gradually. A lower sample at the same instant as
// the previous one does not move the value.
//
// Unlike Finagle and tower it does not decay toward zero when no
// samples come; the caller keeps feeding it (a health check) or judges
// staleness by Snapshot().At.
//
// Make one with NewPeakEWMA or Init. It is safe for concurrent use:
// Observe takes a short mutex, Value is one atomic load. It must not be
// copied after first use.
type PeakEWMA struct {
	mu       sync.Mutex
	halfLife int64
	cur      float64
	at       int64
	samples  uint64
	value    atomic.Uint64
}

// NewPeakEWMA returns a PeakEWMA with the given half-life, which must
// be positive.
func NewPeakEWMA(halfLife time.Duration) *PeakEWMA {
	p := new(PeakEWMA)
	p.Init(halfLife)
	return p
}

// Init readies p with the given half-life, which must be positive,
// discarding any samples. It must not race with other methods.
func (p *PeakEWMA) Init(halfLife time.Duration) {
	if halfLife <= 0 {
		panic("metrics: PeakEWMA half-life must be positive")
	}
	p.halfLife = int64(halfLife)
	p.cur, p.at, p.samples = 0, 0, 0
	p.value.Store(0)
}

// Observe records sample v taken at now.
func (p *PeakEWMA) Observe(v float64, now time.Time) {
	n := now.UnixNano()
	p.mu.Lock()
	switch {
	case p.samples == 0 || v >= p.cur:
		p.cur = v
	default:
		p.cur = v + (p.cur-v)*decay(n-p.at, p.halfLife)
	}
	if p.samples == 0 {
		p.at = n
	} else {
		p.at = max(p.at, n)
	}
	p.samples++
	p.value.Store(math.Float64bits(p.cur))
	p.mu.Unlock()
}

// Value returns the value as of the latest sample, 0 before any.
func (p *PeakEWMA) Value() float64 { return math.Float64frombits(p.value.Load()) }

// Snapshot returns the state of p.
func (p *PeakEWMA) Snapshot() EWMASnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return EWMASnapshot{Value: p.cur, Samples: p.samples, At: p.at}
}

// DecayingCounter is a count that halves every half-life, for error
// rates: after Add(1, t) for each error, Value(now) is
// Σ 2^(−(now−t)/halfLife). Multiplied by ln 2 / halfLife it estimates
// the events per unit time.
//
// Make one with NewDecayingCounter or Init. It is safe for concurrent
// use (a short mutex). It must not be copied after first use.
type DecayingCounter struct {
	mu       sync.Mutex
	halfLife int64
	v        float64 // as of at
	at       int64
}

// NewDecayingCounter returns a DecayingCounter with the given half-life,
// which must be positive.
func NewDecayingCounter(halfLife time.Duration) *DecayingCounter {
	d := new(DecayingCounter)
	d.Init(halfLife)
	return d
}

// Init readies d with the given half-life, which must be positive,
// discarding the count. It must not race with other methods.
func (d *DecayingCounter) Init(halfLife time.Duration) {
	if halfLife <= 0 {
		panic("metrics: DecayingCounter half-life must be positive")
	}
	d.halfLife = int64(halfLife)
	d.v, d.at = 0, 0
}

// Add adds n at now. An Add at a time earlier than one already seen
// counts at the latest time (it is not decayed).
func (d *DecayingCounter) Add(n float64, now time.Time) {
	t := now.UnixNano()
	d.mu.Lock()
	d.v = d.v*decay(t-d.at, d.halfLife) + n
	d.at = max(d.at, t)
	d.mu.Unlock()
}

// Value returns the count decayed to now. A now earlier than the latest
// Add returns the count as of that Add.
func (d *DecayingCounter) Value(now time.Time) float64 {
	t := now.UnixNano()
	d.mu.Lock()
	v, at := d.v, d.at
	d.mu.Unlock()
	return v * decay(t-at, d.halfLife)
}
