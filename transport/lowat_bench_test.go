package transport

import "testing"

// BenchmarkTLSWriteLowat: BenchmarkTLSWrite64K's link (TCP + TLS on
// loopback, 64 KiB writes, far end discarding) with each
// Config.NotSentLowat, on both ends.
func BenchmarkTLSWriteLowat(b *testing.B) {
	for _, tc := range []struct {
		name  string
		lowat int
	}{
		{"16KiB", 16 << 10},
		{"32KiB", 32 << 10},
		{"128KiB", 128 << 10},
		{"off", -1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchTLSWrites(b, Config{NotSentLowat: tc.lowat}, false)
		})
	}
}
