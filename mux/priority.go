package mux

import (
	"fmt"
	"strconv"
	"strings"
)

// Priority orders the streams of one session. Each session's write
// scheduler gives turns on the link to the priorities in proportion to
// Config.PriorityWeights (critical 8, high 4, normal 2, low 1 by
// default), and high and critical streams may use the stream slots and
// write queue room reserved for them. The opening priority travels in
// the stream header, so both ends know it; Stream.SetPriority changes it
// for this side's writes only.
type Priority uint8

// Priorities, lowest first.
const (
	PriorityLow      Priority = 0
	PriorityNormal   Priority = 1
	PriorityHigh     Priority = 2
	PriorityCritical Priority = 3

	// NumPriorities is the number of priorities: arrays indexed by
	// Priority (Config.PriorityWeights, Session.QueueStats, ...) have
	// this length.
	NumPriorities = 4
)

// String returns "low", "normal", "high" or "critical", or "priority(N)"
// for a value outside them.
func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	}
	return "priority(" + strconv.Itoa(int(p)) + ")"
}

// Valid reports whether p is one of the four priorities.
func (p Priority) Valid() bool { return p <= PriorityCritical }

// ParsePriority parses a priority name (low, normal, high, critical; any
// case) or its number (0..3).
func ParsePriority(s string) (Priority, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "low", "0":
		return PriorityLow, nil
	case "normal", "1":
		return PriorityNormal, nil
	case "high", "2":
		return PriorityHigh, nil
	case "critical", "3":
		return PriorityCritical, nil
	}
	return 0, fmt.Errorf("%w: %q (want low, normal, high or critical)", ErrInvalidPriority, s)
}

// MaxProtocolLen is the longest protocol name, in bytes.
const MaxProtocolLen = 128

// ValidateProtocol checks a protocol name: 1..MaxProtocolLen bytes of
// printable ASCII without space (0x21..0x7e). The error wraps
// ErrInvalidProtocol and says what is wrong.
func ValidateProtocol(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalidProtocol)
	}
	if len(p) > MaxProtocolLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidProtocol, len(p), MaxProtocolLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == ' ' {
			return fmt.Errorf("%w: space at offset %d", ErrInvalidProtocol, i)
		}
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: byte 0x%02x at offset %d is not printable ASCII", ErrInvalidProtocol, c, i)
		}
	}
	return nil
}
