package peerlink

import (
	"testing"
	"time"
)

func TestStreamWindow(t *testing.T) {
	const mbit100 = 12_500_000 // bytes/s
	for _, tc := range []struct {
		rtt  time.Duration
		bw   int64
		max  uint32
		want uint32
	}{
		{0, mbit100, 16 << 20, 256 << 10},                       // no RTT measured: the minimum
		{time.Millisecond, mbit100, 16 << 20, 256 << 10},        // 12.5 KB BDP: the minimum
		{100 * time.Millisecond, mbit100, 16 << 20, 2496 << 10}, // 2 × 1.25 MB, rounded up to 64 KiB
		{100 * time.Millisecond, 0, 16 << 20, 256 << 10},        // sizing off
		{time.Second, 1 << 30, 16 << 20, 16 << 20},              // clamped to the maximum
		{time.Second, 1 << 30, 1, 256 << 10},                    // a maximum under the minimum is the minimum
	} {
		if got := streamWindow(tc.rtt, tc.bw, tc.max); got != tc.want {
			t.Errorf("streamWindow(%v, %d, %d) = %d, want %d", tc.rtt, tc.bw, tc.max, got, tc.want)
		}
	}
}
