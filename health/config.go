package health

import (
	"errors"
	"fmt"
	"time"
)

// Defaults that a zero Config field selects.
const (
	DefaultInterval         = 10 * time.Second
	DefaultTimeout          = 5 * time.Second
	DefaultFailureThreshold = 3
	DefaultMaxInFlight      = 16
	DefaultBatchSize        = 256
)

// ErrInvalidConfig is wrapped by the error of Config.Validate and
// NewMonitor; the message names the field that is wrong.
var ErrInvalidConfig = errors.New("health: invalid config")

// Config tunes health checking. The zero value of each field selects its
// default; DefaultConfig spells them out.
type Config struct {
	// Interval is how often the monitor sweeps the links, from the start
	// of one sweep to the start of the next (a sweep that takes longer is
	// followed at once by the next). 0 selects DefaultInterval.
	Interval time.Duration
	// Timeout bounds one probe. 0 selects DefaultTimeout.
	Timeout time.Duration
	// IdleThreshold: a link on which no bytes have arrived for this long
	// since its last check needs a probe. 0 selects Interval: then an
	// idle link is probed at every other sweep (an answer is arrival),
	// a busy one never. A link whose last probe failed, with nothing
	// arrived since, is probed again at every sweep, whatever
	// IdleThreshold.
	IdleThreshold time.Duration
	// FailureThreshold is the number of consecutive failed checks that
	// declares a link dead: with 3, the 3rd failure in a row does. 0
	// selects DefaultFailureThreshold.
	FailureThreshold int
	// MaxInFlight bounds the probes in flight at once, across all links
	// (and across sweeps that run at the same time). 0 selects
	// DefaultMaxInFlight.
	MaxInFlight int
	// BatchSize is the number of links a sweep examines between two
	// yields of the processor (runtime.Gosched), so that a sweep of 100k
	// links never keeps a processor for more than a few microseconds at a
	// time. Examining a link is a NeedsCheck, with no I/O. 0 selects
	// DefaultBatchSize.
	BatchSize int
}

// DefaultConfig returns the defaults. IdleThreshold is left 0, so that it
// follows Interval when that is changed.
func DefaultConfig() Config {
	return Config{
		Interval:         DefaultInterval,
		Timeout:          DefaultTimeout,
		FailureThreshold: DefaultFailureThreshold,
		MaxInFlight:      DefaultMaxInFlight,
		BatchSize:        DefaultBatchSize,
	}
}

// Validate reports the first field that is wrong (negative), naming it;
// the error wraps ErrInvalidConfig. Zero fields are valid: they select
// the defaults.
func (c Config) Validate() error {
	bad := func(field string, v any, def any) error {
		return fmt.Errorf("%w: %s is %v, want 0 (the default, %v) or more", ErrInvalidConfig, field, v, def)
	}
	switch {
	case c.Interval < 0:
		return bad("Interval", c.Interval, DefaultInterval)
	case c.Timeout < 0:
		return bad("Timeout", c.Timeout, DefaultTimeout)
	case c.IdleThreshold < 0:
		return bad("IdleThreshold", c.IdleThreshold, "Interval")
	case c.FailureThreshold < 0:
		return bad("FailureThreshold", c.FailureThreshold, DefaultFailureThreshold)
	case c.MaxInFlight < 0:
		return bad("MaxInFlight", c.MaxInFlight, DefaultMaxInFlight)
	case c.BatchSize < 0:
		return bad("BatchSize", c.BatchSize, DefaultBatchSize)
	}
	return nil
}

// withDefaults returns c with its zero fields (and, for the functions
// that do not validate, its negative ones) replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.IdleThreshold <= 0 {
		c.IdleThreshold = c.Interval
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	return c
}

// DetectionBound returns the worst-case time from a link going silent (its
// last byte arriving) to a Monitor declaring it dead:
//
//	(Interval+Timeout)*FailureThreshold + Interval
//
// (55s with the defaults), as long as Timeout and IdleThreshold do not
// exceed Interval. Beyond that, sweeps spread out (one lasts as long as
// its slowest probe) and the first probe waits for IdleThreshold, and the
// bound returned is the larger
//
//	IdleThreshold + FailureThreshold*G + Timeout
//
// where G = max(Interval, Timeout) is the longest time between the starts
// of two sweeps: the first probe comes at most IdleThreshold+G after the
// last byte, and a failing link is probed again at every sweep.
//
// In practice a link is declared dead sooner: the first probe comes
// IdleThreshold to IdleThreshold+Interval after the last byte, the others
// one Interval apart, and the last fails Timeout after it starts: 35–45s
// with the defaults. The bound counts from the last byte, so it holds
// from the moment a link goes silent whether the link was busy (its last
// byte arrives just before) or idle (its last byte, the answer to a
// probe, came earlier, so it is often declared dead sooner after the
// silence).
//
// The bound assumes what the Monitor cannot enforce: that Target.Ping
// returns when its context ends, and that the links needing a probe in
// one sweep do not wait for MaxInFlight slots (so that a sweep lasts at
// most Timeout). A sweep in which many links are silent at once (a
// network partition) takes about ceil(silent/MaxInFlight)*Timeout, and
// detection is delayed by as much.
func (c Config) DetectionBound() time.Duration {
	c = c.withDefaults()
	i, t, idle, k := c.Interval, c.Timeout, c.IdleThreshold, time.Duration(c.FailureThreshold)
	g := max(i, t)
	return max((i+t)*k+i, idle+k*g+t)
}

// NewState returns a State for a link that starts now, which declares the
// link dead after c.FailureThreshold consecutive failures (see Observe).
func (c Config) NewState(now time.Time) *State {
	s := NewState(now)
	s.threshold = uint32(c.withDefaults().FailureThreshold)
	return s
}
