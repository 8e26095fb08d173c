package transport

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/peerlink/peerlink/peer"
)

// benchPair returns a listening transport's address and ID, and a dialing
// transport. Accepted links are handled by serve in their own goroutine.
func benchPair(b *testing.B, e env, serve func(Conn)) (string, peer.ID, Transport, func() Stats) {
	b.Helper()
	newT := func() (*peer.Identity, Transport) {
		id, err := peer.GenerateIdentity()
		if err != nil {
			b.Fatal(err)
		}
		// Over net.Pipe a tight dial loop can outrun the listener's
		// goroutines, which are runnable but not yet scheduled after
		// writing their verdicts; they still hold pending slots. Over
		// TCP all dials come from 127.0.0.1, and closed links may not
		// have been counted out yet: no per-address caps either.
		tr, err := e.newTransport(Config{Identity: id, Network: testNetwork, MaxPendingHandshakes: 1 << 20,
			MaxPendingPerIP: -1, MaxPendingPerSubnet: -1, MaxInboundPerIP: -1})
		if err != nil {
			b.Fatal(err)
		}
		return id, tr
	}
	aID, a := newT()
	_, d := newT()
	l, err := a.Listen(e.listenAddr())
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	b.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String(), aID.ID(), d, a.(interface{ Stats() Stats }).Stats
}

func benchDial(b *testing.B, e env, echo bool) {
	serve := func(c Conn) {
		if echo {
			var buf [1]byte
			if _, err := io.ReadFull(c, buf[:]); err == nil {
				c.Write(buf[:])
			}
		}
	}
	addr, id, d, lstats := benchPair(b, e, serve)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := d.Dial(ctx, addr, id)
		if err != nil {
			b.Fatalf("%v\nlistener stats %+v", err, lstats())
		}
		if echo {
			var buf [1]byte
			if _, err := c.Write([]byte{'x'}); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf[:]); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
	}
}

// BenchmarkDialTCPTLS: TCP connect, TLS 1.3 handshake (both sides'
// ed25519 signatures and checks) and the verdict, on loopback. Allocations
// count both sides.
func BenchmarkDialTCPTLS(b *testing.B) { benchDial(b, tcpEnv{}, false) }

// BenchmarkDialTCPTLSEcho adds a one-byte round trip on the new link.
func BenchmarkDialTCPTLSEcho(b *testing.B) { benchDial(b, tcpEnv{}, true) }

// BenchmarkDialMemory: the same sequence over net.Pipe with the hello.
func BenchmarkDialMemory(b *testing.B) { benchDial(b, memEnv{n: NewMemoryNetwork()}, false) }
