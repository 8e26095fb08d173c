// Package score computes a peer's quality score: one number in [0, 1]
// that says how good a peer has been to talk to, and a breakdown that
// says why. It is pure logic over a peer's figures (round trips, errors,
// health checks, its circuit breaker, reconnects, and what the
// application reports), with no clock or lock of its own: the caller
// passes the figures as of now, and gets the same answer for the same
// figures.
//
// The score is the weighted mean of five parts, each in [0, 1]:
//
//   - latency: ReferenceRTT / (ReferenceRTT + rtt), where rtt is the
//     mean of the round-trip EWMA and its peak (a peer that was slow a
//     moment ago pays for it until its peak decays); 1 at no latency, 0.5
//     at ReferenceRTT. A peer never measured counts as ReferenceRTT.
//   - errors: (s + 1) / (s + e + 1) over the decayed counts of successes
//     s and errors e (both halve every ErrorHalfLife): 1 with no errors, 0.5
//     after one error and no success.
//   - health: 1 − f / HealthFailures for f health checks failed in a row.
//   - stability: c / (c + r × StabilityUnit) for connected time c and r
//     reconnects; 1 before the first reconnect.
//   - application: (a + 1) / 2 for the application's value a in [−1, 1]
//     (0, neutral, unless set).
//
// Two rules bound the mean. An open circuit scores 0. And the score is
// never above the errors part or the health part: neither low latency
// nor a good application value can hide failures. (Lighthouse dropped
// positive scores because peers could pump them and then misbehave; here
// a positive application value still ranks a well-behaved peer higher,
// but a failing one is held at what its failures allow.) When that cap
// applies, the breakdown shows it as a part of its own, so that the
// contributions always add up to the score.
package score

import (
	"fmt"
	"math"
	"time"
)

// Weights of the parts. They need not add up to one; only their ratios
// matter. A zero weight leaves a part out.
type Weights struct {
	Latency     float64
	Errors      float64
	Health      float64
	Stability   float64
	Application float64
}

// Config sets how the parts are computed and weighed. Zero fields select
// the defaults.
type Config struct {
	Weights Weights
	// ReferenceRTT is the round trip at which the latency part is 0.5
	// (100 ms).
	ReferenceRTT time.Duration
	// HealthFailures is how many failed checks in a row bring the health
	// part to 0 (3, the health monitor's default threshold).
	HealthFailures int
	// StabilityUnit is how much connected time one reconnect costs
	// (1 min): a peer connected for an hour with one reconnect scores
	// 0.98, one that reconnected 30 times in 10 minutes 0.25.
	StabilityUnit time.Duration
}

// Defaults.
const (
	DefaultReferenceRTT   = 100 * time.Millisecond
	DefaultHealthFailures = 3
	DefaultStabilityUnit  = time.Minute
)

// DefaultWeights weigh latency and errors most: they are what a caller
// choosing a peer for a request feels.
var DefaultWeights = Weights{Latency: 0.35, Errors: 0.35, Health: 0.1, Stability: 0.1, Application: 0.1}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	w := c.Weights
	for _, f := range []struct {
		name string
		v    float64
	}{{"Latency", w.Latency}, {"Errors", w.Errors}, {"Health", w.Health}, {"Stability", w.Stability}, {"Application", w.Application}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("score: invalid Weights.%s %v: must be a finite number >= 0", f.name, f.v)
		}
	}
	switch {
	case c.ReferenceRTT < 0:
		return fmt.Errorf("score: invalid ReferenceRTT %v: must be >= 0", c.ReferenceRTT)
	case c.HealthFailures < 0:
		return fmt.Errorf("score: invalid HealthFailures %d: must be >= 0", c.HealthFailures)
	case c.StabilityUnit < 0:
		return fmt.Errorf("score: invalid StabilityUnit %v: must be >= 0", c.StabilityUnit)
	}
	return nil
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Weights == (Weights{}) {
		c.Weights = DefaultWeights
	}
	if c.ReferenceRTT == 0 {
		c.ReferenceRTT = DefaultReferenceRTT
	}
	if c.HealthFailures == 0 {
		c.HealthFailures = DefaultHealthFailures
	}
	if c.StabilityUnit == 0 {
		c.StabilityUnit = DefaultStabilityUnit
	}
	return c
}

// Inputs are a peer's figures as of now.
type Inputs struct {
	RTT     time.Duration // round-trip EWMA; 0: never measured
	RTTPeak time.Duration // its peak (at least RTT)

	Successes float64 // decayed count
	Errors    float64 // decayed count

	FailedChecks int // health checks failed in a row

	CircuitOpen bool

	Connected  time.Duration // total time with a link
	Reconnects uint64

	Application float64 // the application's value, in [−1, 1]
}

// Part is one component of a score.
type Part struct {
	Name   string  // "latency", "errors", "health", "stability", "application", "cap", "circuit"
	Weight float64 // its share of the mean (weights normalised to add up to 1); 0 for "cap" and "circuit"
	Value  float64 // in [0, 1]; for "cap" and "circuit", the amount taken off (negative)
}

// Contribution is what the part adds to the score.
func (p Part) Contribution() float64 {
	if p.Weight == 0 {
		return p.Value
	}
	return p.Weight * p.Value
}

// Breakdown is a score and its parts; the parts' contributions add up to
// the score.
type Breakdown struct {
	Score float64
	Parts []Part
}

// Compute returns the score of in under c (c with its defaults filled in:
// see Config.WithDefaults).
func Compute(c Config, in Inputs) Breakdown {
	var b Breakdown
	b.Parts = make([]Part, 0, 7)
	b.Score = compute(c, in, &b.Parts)
	return b
}

// Value returns the score alone, without allocating.
func Value(c Config, in Inputs) float64 { return compute(c, in, nil) }

func compute(c Config, in Inputs, parts *[]Part) float64 {
	w := c.Weights
	total := w.Latency + w.Errors + w.Health + w.Stability + w.Application
	if total == 0 {
		total = 1
	}
	lat := latencyPart(c, in)
	errs := (in.Successes + 1) / (in.Successes + max(in.Errors, 0) + 1)
	health := 1.0
	if c.HealthFailures > 0 {
		health = clamp01(1 - float64(in.FailedChecks)/float64(c.HealthFailures))
	}
	stab := 1.0
	if in.Reconnects > 0 && c.StabilityUnit > 0 {
		conn := float64(in.Connected)
		stab = conn / (conn + float64(in.Reconnects)*float64(c.StabilityUnit))
	}
	app := clamp01((clampUnit(in.Application) + 1) / 2)

	mean := (w.Latency*lat + w.Errors*errs + w.Health*health + w.Stability*stab + w.Application*app) / total
	if parts != nil {
		*parts = append(*parts,
			Part{"latency", w.Latency / total, lat},
			Part{"errors", w.Errors / total, errs},
			Part{"health", w.Health / total, health},
			Part{"stability", w.Stability / total, stab},
			Part{"application", w.Application / total, app},
		)
	}
	score := mean
	if limit := min(errs, health); score > limit {
		if parts != nil {
			*parts = append(*parts, Part{Name: "cap", Value: limit - score})
		}
		score = limit
	}
	if in.CircuitOpen {
		if parts != nil {
			*parts = append(*parts, Part{Name: "circuit", Value: -score})
		}
		score = 0
	}
	return score
}

func latencyPart(c Config, in Inputs) float64 {
	ref := float64(c.ReferenceRTT)
	if ref <= 0 {
		return 1
	}
	rtt := float64(c.ReferenceRTT)
	if in.RTT > 0 {
		rtt = (float64(in.RTT) + float64(max(in.RTTPeak, in.RTT))) / 2
	}
	return ref / (ref + rtt)
}

func clamp01(v float64) float64 {
	switch {
	case math.IsNaN(v) || v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}

func clampUnit(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 0
	case v < -1:
		return -1
	case v > 1:
		return 1
	}
	return v
}
