package peerlink_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// statsScenario does known things on a manager a: links to b and c, a
// round trip to b, RecordSuccess to b with each latency, a RecordError
// to c, a dial to a closed port (refused), then Disconnect from c. It
// returns a and b.
func statsScenario(t *testing.T, latencies ...time.Duration) (a, b *peerlink.ConnectionManager) {
	t.Helper()
	a = newManager(t)
	b, c := newManager(t), newManager(t)
	withEcho(b, t)
	withEcho(c, t)
	connect(t, a, b)
	connect(t, a, c)
	roundTrip(t, a, b.ID(), []byte("hello"))
	for _, d := range latencies {
		a.RecordSuccess(b.ID(), d)
	}
	a.RecordError(c.ID(), errors.New("bad answer"))

	// A dial to a closed port: refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	gone, _ := peer.GenerateIdentity()
	if err := a.Connect(ctxT(t), peer.AddrInfo{ID: gone.ID(), Addrs: []string{dead}}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if err := a.Disconnect(c.ID()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestStatistics(t *testing.T) {
	a, b := statsScenario(t, 30*time.Millisecond, 50*time.Millisecond)
	s := a.Statistics()
	t.Logf("%+v", s)
	if s.Connections.Open != 1 || s.Connections.Outbound != 1 || s.Connections.Opened[1] != 2 {
		t.Errorf("connections %+v: want 1 open of 2 opened outbound", s.Connections)
	}
	if s.Connections.Closed[peerlink.ReasonLocal.String()] != 1 {
		t.Errorf("closed %v: want one local disconnect", s.Connections.Closed)
	}
	if s.Dials.Attempts != 3 || s.Dials.Errors[peerlink.DialErrorRefused] != 1 {
		t.Errorf("dials %+v: want 3 attempts, 1 refused", s.Dials)
	}
	if s.Handshake.Count != 2 || s.Handshake.P50 <= 0 {
		t.Errorf("handshake latency %+v: want 2 samples", s.Handshake)
	}
	if s.Requests.Count != 2 || s.Requests.Max < 49*time.Millisecond || s.Requests.Max > 51*time.Millisecond || s.RequestErrors != 1 {
		t.Errorf("requests %+v, errors %d: want 2 samples up to 50 ms and 1 error", s.Requests, s.RequestErrors)
	}
	if s.BytesOut == 0 || s.BytesIn == 0 || s.Peers != 3 {
		t.Errorf("bytes %d/%d, peers %d", s.BytesIn, s.BytesOut, s.Peers)
	}
	if s.MemoryLimit != peerlink.DefaultNodeMemoryBudget {
		t.Errorf("memory limit %d", s.MemoryLimit)
	}
	if s.Transport.OutboundOK != 2 {
		t.Errorf("transport %+v: want 2 outbound links", s.Transport)
	}
	// Per-second figures: what moved between two calls.
	roundTrip(t, a, b.ID(), make([]byte, 64<<10))
	s2 := a.Statistics()
	if s2.BytesOutPerSecond <= 0 || s2.BytesInPerSecond <= 0 || s2.StreamsPerSecond <= 0 {
		t.Errorf("per second: in %v, out %v, streams %v; want all > 0 after a 64 KiB round trip", s2.BytesInPerSecond, s2.BytesOutPerSecond, s2.StreamsPerSecond)
	}
}

func BenchmarkStatistics(b *testing.B) {
	a := newManager(b)
	for range 16 {
		p := newManager(b)
		connect(b, a, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Statistics()
	}
}

// BenchmarkThroughputWithMetrics: one stream's throughput through the
// manager with metrics off, and on: a scraper taking Statistics() every
// 10 ms and the application recording every 64 KiB write
// (RecordSuccess), as CometBFT records per-peer send metrics.
func BenchmarkThroughputWithMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "metrics=off", true: "metrics=on"}[on], func(b *testing.B) {
			const chunk = 64 << 10
			buf := make([]byte, chunk)
			src, dst := newManager(b), newManager(b)
			if err := dst.SetStreamHandler(sinkProto, func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
				b.Fatal(err)
			}
			connect(b, src, dst)
			s, err := src.OpenStream(ctxT(b), dst.ID(), sinkProto, mux.PriorityNormal)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if on {
				wg.Go(func() {
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							_ = src.Statistics()
						}
					}
				})
			}
			b.SetBytes(chunk)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
				if on {
					src.RecordSuccess(dst.ID(), time.Since(start))
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}

// BenchmarkStatisticsManyLinks: Statistics() on a node with 10,000 open
// links (memory transport, each from a bare transport of its own).
func BenchmarkStatisticsManyLinks(b *testing.B) {
	hub, _ := manyLinks(b, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		_ = hub.Statistics()
	}
}

// manyLinks returns a hub with n open inbound links over the in-memory
// transport, and the remote peers' IDs.
func manyLinks(b *testing.B, links int) (*peerlink.ConnectionManager, []peer.ID) {
	b.Helper()
	network := transport.NewMemoryNetwork()
	hub := newManager(b, func(c *peerlink.Config) {
		c.Transport = peerlink.MemoryTransport(network)
		c.ListenAddrs = []string{"hub"}
		c.MaxConnections, c.MaxInboundConnections = 0, 0
		c.MaxPendingHandshakes = links // the dials outrun registration
		// The remotes are bare transport conns that answer no ping: no
		// check (nor keepalive) within the benchmark's time.
		c.Health.Interval = time.Hour
	})
	sub := hub.Subscribe(links + 16)
	var conns []transport.Conn
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	ids := make([]peer.ID, 0, links)
	for range links {
		id, err := peer.GenerateIdentity()
		if err != nil {
			b.Fatal(err)
		}
		tr, err := network.NewTransport(transport.Config{Identity: id, Network: "peerlink-test"})
		if err != nil {
			b.Fatal(err)
		}
		c, err := tr.Dial(ctxT(b), "hub", hub.ID())
		if err != nil {
			b.Fatalf("link %d: %v (hub has %d)", len(conns), err, hub.ConnectionCount())
		}
		conns = append(conns, c)
		ids = append(ids, id.ID())
	}
	for range links { // registration is asynchronous: wait for each link's event
		waitEvent(b, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	}
	sub.Close()
	return hub, ids
}
