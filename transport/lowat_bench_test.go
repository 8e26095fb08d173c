package transport

import (
	"context"
	"io"
	"testing"

	"github.com/peerlink/peerlink/peer"
)

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
			idA, _ := peer.GenerateIdentity()
			idB, _ := peer.GenerateIdentity()
			ta, _ := NewTCP(Config{Identity: idA, Network: "bench", NotSentLowat: tc.lowat})
			tb, _ := NewTCP(Config{Identity: idB, Network: "bench", NotSentLowat: tc.lowat})
			ln, err := tb.Listen("127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
			c, err := ta.Dial(context.Background(), ln.Addr().String(), idB.ID())
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c.Close()
			<-done
		})
	}
}
