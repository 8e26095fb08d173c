package simulation

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that JSON spells as Go does ("50ms",
// "1m30s"); a bare number is read as nanoseconds, as time.Duration's own
// encoding writes it.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d as time.Duration prints it.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "1.5s" (time.ParseDuration) or a number of
// nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var ns int64
		if err := json.Unmarshal(b, &ns); err != nil {
			return fmt.Errorf("simulation: duration %s: want a string such as \"50ms\" or nanoseconds", b)
		}
		*d = Duration(ns)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("simulation: duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
