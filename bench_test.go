package peerlink_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

const sinkProto = "/bench/sink/1"

// BenchmarkStreamThroughput compares one stream through the manager (TCP +
// TLS 1.3) with raw yamux over a plain crypto/tls connection, interleaving
// the two so that both see the same machine. Each op moves 1 MiB through
// each; "ratio" is peerlink's throughput over raw's.
func BenchmarkStreamThroughput(b *testing.B) {
	const chunk, perOp = 64 << 10, 1 << 20
	buf := make([]byte, chunk)

	// peerlink: a stream whose remote handler discards what it reads.
	src := newManager(b)
	dst := newManager(b)
	if err := dst.SetStreamHandler(sinkProto, func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
		b.Fatal(err)
	}
	connect(b, src, dst)
	ps, err := src.OpenStream(ctxT(b), dst.ID(), sinkProto, mux.PriorityNormal)
	if err != nil {
		b.Fatal(err)
	}
	defer ps.Close()

	// raw yamux over a link from the same TLS transport.
	raw := rawYamuxStream(b)

	var tPeerlink, tRaw time.Duration
	b.ReportAllocs()
	b.SetBytes(2 * perOp)
	b.ResetTimer()
	send := func(w io.Writer) time.Duration {
		start := time.Now()
		for sent := 0; sent < perOp; sent += chunk {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	for i := range b.N {
		// Alternate who goes first: the one that goes second shares the
		// CPU with the receiver still draining the first one's tail.
		if i%2 == 0 {
			tRaw += send(raw)
			tPeerlink += send(ps)
		} else {
			tPeerlink += send(ps)
			tRaw += send(raw)
		}
	}
	mb := float64(b.N) * perOp / 1e6
	b.ReportMetric(mb/tPeerlink.Seconds(), "peerlink-MB/s")
	b.ReportMetric(mb/tRaw.Seconds(), "raw-yamux-tls-MB/s")
	b.ReportMetric(tRaw.Seconds()/tPeerlink.Seconds(), "ratio")
}

// rawYamuxStream returns a yamux stream over a plain crypto/tls 1.3
// connection on loopback TCP (a throwaway ed25519 certificate, default
// settings otherwise), whose far end discards everything: what an
// application gets from yamux and the standard library alone.
func rawYamuxStream(b *testing.B) *yamux.Stream {
	b.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	ca := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	cb := <-accepted
	if cb == nil {
		b.Fatal("accept failed")
	}
	// The handshakes run when the sessions first read and write.
	client, server := yamuxPair(b, ca, cb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s, err := server.AcceptStream()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, s)
	}()
	b.Cleanup(func() {
		client.Close()
		server.Close()
		<-done
	})
	s, err := client.OpenStream()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkOpenStreamEcho measures OpenStream + a 1-byte echo + Close over
// an open TCP + TLS link.
func BenchmarkOpenStreamEcho(b *testing.B) {
	a, c := newManager(b), newManager(b)
	withEcho(c, b)
	connect(b, a, c)
	ctx := context.Background()
	one := []byte{42}
	got := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		s, err := a.OpenStream(ctx, c.ID(), echoProto, mux.PriorityHigh)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, got); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/roundtrip")
}

// BenchmarkKnownPeerMemory reports the heap a known but unconnected peer
// costs (its record, with one address in its book), and what is left of
// it once the record is pruned.
func BenchmarkKnownPeerMemory(b *testing.B) {
	const peers = 100_000
	addrs := make([]peer.AddrInfo, peers)
	for i := range addrs {
		id, _ := peer.GenerateIdentity()
		addrs[i] = peer.AddrInfo{ID: id.ID(), Addrs: []string{"10.1.2.3:26656"}}
	}
	b.ReportAllocs()
	for range b.N {
		cfg := peerlink.DefaultConfig()
		fake := clock.NewFake(time.Unix(1_000_000, 0))
		cfg.Clock = fake
		m, err := peerlink.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		var before, kept, pruned runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, info := range addrs {
			if err := m.AddPeer(info); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&kept)
		// Past the addresses' TTL and the retention, every record goes.
		fake.Advance(cfg.AddrTTL + cfg.RecordRetention)
		m.PruneRecords() // the pruner, woken by Advance, may take some first
		if n := m.KnownPeers(); n != 0 {
			b.Fatalf("%d records left after pruning, want 0", n)
		}
		runtime.GC()
		runtime.ReadMemStats(&pruned)
		b.ReportMetric(float64(kept.HeapAlloc-before.HeapAlloc)/peers, "B/peer")
		b.ReportMetric(float64(int64(pruned.HeapAlloc)-int64(before.HeapAlloc))/peers, "B/pruned-peer")
		runtime.KeepAlive(addrs)
		m.Close()
	}
}

// yamuxPair starts raw yamux sessions, client over ca and server over cb,
// with yamux's defaults and its logs discarded.
func yamuxPair(b *testing.B, ca, cb net.Conn) (client, server *yamux.Session) {
	b.Helper()
	ycfg := yamux.DefaultConfig()
	ycfg.LogOutput = io.Discard
	client, err := yamux.Client(ca, ycfg)
	if err != nil {
		b.Fatal(err)
	}
	server, err = yamux.Server(cb, ycfg)
	if err != nil {
		client.Close()
		b.Fatal(err)
	}
	return client, server
}
