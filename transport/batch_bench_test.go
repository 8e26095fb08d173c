package transport

import (
	"context"
	"io"
	"testing"

	"github.com/peerlink/peerlink/peer"
)

// BenchmarkTLSWrite64K: one TCP + TLS link, 64 KiB writes, far end
// discarding; with records gathered per write (the default) and with
// crypto/tls writing each record itself.
func BenchmarkTLSWrite64K(b *testing.B) {
	for _, mode := range []string{"batched", "per-record"} {
		b.Run(mode, func(b *testing.B) {
			benchTLSWrites(b, Config{}, mode == "per-record")
		})
	}
}

// benchTLSWrites writes 64 KiB at a time over a TCP + TLS link made with
// cfg (Identity and Network filled in) to a far end that discards it; per
// record bypasses the record batcher.
func benchTLSWrites(b *testing.B, cfg Config, perRecord bool) {
	idA, _ := peer.GenerateIdentity()
	idB, _ := peer.GenerateIdentity()
	cfg.Network = "bench"
	cfg.Identity = idA
	ta, err := NewTCP(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Identity = idB
	tb, err := NewTCP(cfg)
	if err != nil {
		b.Fatal(err)
	}
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
	var w io.Writer = c
	if perRecord {
		w = c.(*tlsConn).Conn
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Close()
	<-done
}
