package peerlink_test

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/transport"
)

// stallEach is a transport whose sockets can be stalled one by one.
type stallEach struct {
	mu    sync.Mutex
	conns []*stallConn
}

func (s *stallEach) transport(tc transport.Config) (transport.Transport, error) {
	tc.RawConnWrapper = func(c net.Conn) net.Conn {
		sc := &stallConn{Conn: c, s: newStall(), closed: make(chan struct{}), wake: make(chan struct{})}
		s.mu.Lock()
		s.conns = append(s.conns, sc)
		s.mu.Unlock()
		return sc
	}
	return peerlink.TCP(tc)
}

// BenchmarkCloseStalledLinks times Close of a node with 100 links of which
// 10 have sockets that stopped draining with a write blocked on each.
func BenchmarkCloseStalledLinks(b *testing.B) {
	const links, stalled = 100, 10
	peers := make([]*peerlink.ConnectionManager, links)
	for i := range peers {
		peers[i] = newManager(b, func(c *peerlink.Config) { c.ListenAddrs = []string{"127.0.0.1:0"} })
		if err := peers[i].SetStreamHandler(sinkProto, func(s *mux.Stream) { <-s.Context().Done() }); err != nil {
			b.Fatal(err)
		}
	}
	var took []time.Duration
	for range b.N {
		b.StopTimer()
		var st stallEach
		cfg := peerlink.DefaultConfig()
		cfg.Network = "peerlink-test"
		cfg.Transport = st.transport
		hub, err := peerlink.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		var writers sync.WaitGroup
		for i, p := range peers {
			connect(b, hub, p)
			if i >= stalled {
				continue
			}
			s, err := hub.OpenStream(ctxT(b), p.ID(), sinkProto, mux.PriorityNormal)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Write([]byte("x")); err != nil {
				b.Fatal(err)
			}
			st.mu.Lock()
			sc := st.conns[i]
			st.mu.Unlock()
			sc.s.on.Store(true)
			writers.Add(1)
			go func() {
				defer writers.Done()
				_, _ = s.Write(make([]byte, 1<<20))
			}()
			select {
			case <-sc.s.entered:
			case <-time.After(waitTimeout):
				b.Fatal("write never reached the stalled socket")
			}
		}
		b.StartTimer()
		start := time.Now()
		if err := hub.Close(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		writers.Wait()
		for _, p := range peers {
			pollUntil(b, "peers see the hub gone", func() bool { return p.ConnectionCount() == 0 })
		}
		b.StartTimer()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "ms-close-p50")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "ms-close-max")
}

// BenchmarkReplacementGap measures, on a node whose peer restarts and
// dials again while its old link still stands, the time between the old
// link's EventDisconnected and the new link's EventConnected.
func BenchmarkReplacementGap(b *testing.B) {
	hub := newManager(b)
	sub := hub.Subscribe(1024)
	defer sub.Close()
	id := newIdentity(b)
	old := newManager(b, func(c *peerlink.Config) { c.Identity = id })
	connect(b, old, hub)
	waitEvent(b, sub, func(ev peerlink.Event) bool { return ev.Type == peerlink.EventConnected })
	var gaps []time.Duration
	for range b.N {
		next := newManager(b, func(c *peerlink.Config) { c.Identity = id })
		connect(b, next, hub)
		down := waitEvent(b, sub, func(ev peerlink.Event) bool { return ev.Type == peerlink.EventDisconnected })
		up := waitEvent(b, sub, func(ev peerlink.Event) bool { return ev.Type == peerlink.EventConnected })
		if down.Reason != peerlink.ReasonReplaced || up.Link <= down.Link {
			b.Fatalf("events out of order: %v then %v", down, up)
		}
		gaps = append(gaps, up.Time.Sub(down.Time))
		old.Close()
		old = next
	}
	slices.Sort(gaps)
	b.ReportMetric(float64(gaps[len(gaps)/2].Nanoseconds()), "ns-gap-p50")
	b.ReportMetric(float64(gaps[len(gaps)-1].Nanoseconds()), "ns-gap-max")
}
