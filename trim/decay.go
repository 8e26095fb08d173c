package trim

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// DecayFunc says how a decaying tag's value falls: given the value the
// last bump left, the number of whole intervals (at least 1) since that
// bump, and the time since it, it returns the value now, or remove to
// drop the tag from the peer. The value is always computed from the last
// bump, never accumulated read by read, so a value read rarely is the
// value read often, and rounding does not compound.
type DecayFunc func(value, intervals int, sinceBump time.Duration) (after int, remove bool)

// BumpFunc says how a bump of delta changes a decaying tag's value.
type BumpFunc func(value, delta int) int

// DecayNone keeps the value: the tag goes only when removed.
func DecayNone() DecayFunc {
	return func(v, _ int, _ time.Duration) (int, bool) { return v, false }
}

// DecayFixed takes minuend off the value every interval, and removes the
// tag once its value is 0 or less.
func DecayFixed(minuend int) DecayFunc {
	return func(v, n int, _ time.Duration) (int, bool) {
		// In int64 with saturation: n can be large after a long quiet.
		after := int64(v) - int64(minuend)*int64(min(n, math.MaxInt32))
		if after <= 0 {
			return 0, true
		}
		return int(after), false
	}
}

// DecayLinear multiplies the value by coef (in [0, 1)) every interval,
// rounding the result down (go-libp2p's name for it, although the fall is
// geometric), and removes the tag once its value is 0 or less.
func DecayLinear(coef float64) DecayFunc {
	return func(v, n int, _ time.Duration) (int, bool) {
		after := math.Floor(float64(v) * math.Pow(coef, float64(n)))
		if after <= 0 || math.IsNaN(after) {
			return 0, true
		}
		return int(after), false
	}
}

// DecayExpireWhenInactive keeps the value, and removes the tag once it
// has not been bumped for after.
func DecayExpireWhenInactive(after time.Duration) DecayFunc {
	return func(v, _ int, sinceBump time.Duration) (int, bool) {
		return v, sinceBump >= after
	}
}

// BumpSumUnbounded adds delta to the value (saturating at the int range).
func BumpSumUnbounded() BumpFunc {
	return func(v, delta int) int { return satAdd(v, delta) }
}

// BumpSumBounded adds delta to the value and keeps the sum in [lo, hi].
func BumpSumBounded(lo, hi int) BumpFunc {
	return func(v, delta int) int { return min(max(satAdd(v, delta), lo), hi) }
}

// BumpOverwrite sets the value to delta.
func BumpOverwrite() BumpFunc {
	return func(_, delta int) int { return delta }
}

func satAdd(a, b int) int {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt
	case b < 0 && s > a:
		return math.MinInt
	}
	return s
}

// ErrInvalidDecay is returned by Decay.Validate.
var ErrInvalidDecay = errors.New("trim: invalid decaying tag")

// Decay is the rule of one decaying tag.
type Decay struct {
	// Interval is the decay's step; it must be positive.
	Interval time.Duration
	// DecayBy lowers the value every Interval; BumpBy raises it.
	DecayBy DecayFunc
	BumpBy  BumpFunc
}

// Validate reports what is wrong with d, naming the field.
func (d Decay) Validate() error {
	switch {
	case d.Interval <= 0:
		return fmt.Errorf("%w: Interval is %v; want a positive duration", ErrInvalidDecay, d.Interval)
	case d.DecayBy == nil:
		return fmt.Errorf("%w: DecayBy is nil", ErrInvalidDecay)
	case d.BumpBy == nil:
		return fmt.Errorf("%w: BumpBy is nil", ErrInvalidDecay)
	}
	return nil
}

// DecayingValue is one decaying tag's value on one peer: the value its
// last bump left and when. Its zero value is a tag never bumped. It is
// not safe for concurrent use: the manager keeps it under the peer's
// lock.
type DecayingValue struct {
	base   int
	bumped int64 // Unix nanoseconds; 0: never bumped
}

// Value returns v's value at now: the value the last bump left, decayed
// by the whole intervals since. It returns false if the decay removed the
// tag (v is then to be dropped).
func (d Decay) Value(v DecayingValue, now time.Time) (int, bool) {
	if v.bumped == 0 {
		return 0, true
	}
	since := now.UnixNano() - v.bumped
	n := since / int64(d.Interval)
	if n <= 0 {
		return v.base, true
	}
	after, remove := d.DecayBy(v.base, int(min(n, math.MaxInt32)), time.Duration(since))
	return after, !remove
}

// Bump applies delta at now to v's value then, and returns the new value.
// A tag never bumped, or decayed away, starts from 0. The next interval
// counts from now.
func (d Decay) Bump(v *DecayingValue, delta int, now time.Time) int {
	cur, ok := d.Value(*v, now)
	if !ok {
		cur = 0
	}
	v.base = d.BumpBy(cur, delta)
	v.bumped = now.UnixNano()
	return v.base
}
