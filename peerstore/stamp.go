package peerstore

import (
	"math"
	"time"
)

// A stamp is an instant in 8 bytes: the Unix time in nanoseconds with its
// sign bit flipped, so that stamps order as the instants they stand for.
// The zero stamp, which would be the earliest instant UnixNano can express
// (in 1677), stands for no instant at all; zero values of the types here
// are therefore ready to use. Like UnixNano, a stamp covers the years 1678
// to 2262.
type stamp uint64

const signBit = 1 << 63

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	return stamp(uint64(t.UnixNano()) ^ signBit)
}

// time returns the instant s stands for, in UTC, or the zero Time.
func (s stamp) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s^signBit)).UTC()
}

// sub returns s−u, or 0 if u is later: callers measure time elapsed, and
// a clock stepping back must not make it negative.
func (s stamp) sub(u stamp) time.Duration {
	if s <= u {
		return 0
	}
	return time.Duration(s - u)
}

// add returns s+d for d >= 0, saturating rather than wrapping.
func (s stamp) add(d time.Duration) stamp {
	if uint64(s) > math.MaxUint64-uint64(d) {
		return math.MaxUint64
	}
	return s + stamp(d)
}
