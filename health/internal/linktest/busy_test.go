package linktest_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/internal/raceflag"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

const sinkProto = "/test/sink/1"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// inBubble runs f in a synctest bubble, emptying yamux's global timer
// pool on both sides of it (two GCs empty a sync.Pool).
func inBubble(t *testing.T, f func(t *testing.T)) {
	runtime.GC()
	runtime.GC()
	defer raceflag.Bubble()() // the race runtime's limit in bubbles: see raceflag
	synctest.Test(t, f)
	runtime.GC()
	runtime.GC()
}

// How a black hole treats writes: faultnet's swallow them (they report
// success and vanish), a choke blocks them once a socket buffer's worth
// has gone, as a TCP socket whose peer stopped acknowledging does (the
// writer then holds the link's write lock for good, and a ping cannot
// even be sent).
const (
	holeSwallows = "writes vanish"
	holeBlocks   = "writes block"
)

// Which end keeps a bulk stream going when the hole opens.
const (
	quiet   = "idle"
	aWrites = "busy, a writes"
	bWrites = "busy, b writes"
)

// silentAfter connects a to b over a shaped in-memory link (in virtual
// time), keeps a bulk writer going on it (unless traffic is quiet), lets
// it run for a while, then black-holes a's end of the link at `after`
// and returns how long a took to declare the link dead (ReasonUnhealthy).
func silentAfter(t *testing.T, hc health.Config, hole, traffic string, after time.Duration) (took time.Duration) {
	inBubble(t, func(t *testing.T) {
		network := transport.NewMemoryNetwork()
		shape := faultnet.Link{Latency: 5 * time.Millisecond, Bandwidth: 10 << 20}
		ch := newChoke(256 << 10)
		var ft *faultnet.Transport
		newNode := func(name string, holed bool) *peerlink.ConnectionManager {
			cfg := peerlink.DefaultConfig()
			cfg.Health = hc
			cfg.ListenAddrs = []string{name}
			mem := peerlink.MemoryTransport(network)
			cfg.Transport = func(tc transport.Config) (transport.Transport, error) {
				tc.RawConnWrapper = shape.Wrap
				if holed && hole == holeBlocks {
					tc.RawConnWrapper = func(c net.Conn) net.Conn { return ch.wrap(shape.Wrap(c)) }
				}
				inner, err := mem(tc)
				if holed && hole == holeSwallows && err == nil {
					ft = faultnet.Wrap(inner)
					return ft, nil
				}
				return inner, err
			}
			m, err := peerlink.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetStreamHandler(sinkProto, func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
				t.Fatal(err)
			}
			return m
		}
		a, b := newNode("a", true), newNode("b", false)
		defer b.Close()
		defer a.Close()
		sub := a.Subscribe(0)
		if err := a.Connect(t.Context(), b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		var written atomic.Int64
		if traffic != quiet {
			from, to := a, b
			if traffic == bWrites {
				from, to = b, a
			}
			s, err := from.OpenStream(t.Context(), to.ID(), sinkProto, mux.PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Write(buf)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(after - hc.Interval)
		before := written.Load()
		time.Sleep(hc.Interval)
		info, err := a.ConnectionInfo(b.ID())
		if err != nil {
			t.Fatalf("before the hole: %v", err)
		}
		if traffic != quiet {
			// Bulk data up to the hole, and never a probe: bytes arrive.
			if moved := written.Load() - before; moved < 1<<20 {
				t.Fatalf("%d bytes written in the last %v before the hole: not busy", moved, hc.Interval)
			}
			if h := info.Health; h.Samples != 0 || h.Failures != 0 {
				t.Fatalf("busy link probed before the hole: %+v", h)
			}
		} else if info.Health.Samples == 0 {
			t.Fatalf("idle link never probed before the hole: %+v", info.Health)
		}

		silenced := time.Now()
		if hole == holeBlocks {
			ch.start()
		} else {
			ft.BlackHole()
		}
		for ev := range sub.C {
			if ev.Type == peerlink.EventDisconnected {
				took = time.Since(silenced)
				if ev.Reason != peerlink.ReasonUnhealthy {
					t.Errorf("link closed with %v (%v), want unhealthy", ev.Reason, ev.Err)
				}
				return
			}
		}
	})
	return took
}

// TestBusyLinkDeclaredDeadLikeIdle: a link carrying bulk data that is
// black-holed (nothing arrives any more, the socket stays open) is
// declared dead within the same bound, counted from the hole, as an idle
// one:
//
//	IdleThreshold + FailureThreshold*max(Interval, Timeout) + Timeout
//
// (2.25 s here, under DetectionBound's 2.75 s), whether its writer's
// bytes vanish or block (a writer blocked on the link holds its write
// lock, so the probe's ping is never even sent; the probe fails when its
// Timeout passes all the same), and whichever end was writing. Liveness
// is bytes read, so a busy link is probed once IdleThreshold has passed
// since its last byte, that is since the hole, and then at every sweep.
// Virtual time, for exact figures at several moments between sweeps (in
// which a sweep takes no time, so the lag that made failing links skip
// sweeps in real time does not show: health's
// TestFailingLinkProbedEverySweep covers that).
func TestBusyLinkDeclaredDeadLikeIdle(t *testing.T) {
	hc := health.Config{Interval: 500 * time.Millisecond, Timeout: 250 * time.Millisecond, FailureThreshold: 3}
	g := max(hc.Interval, hc.Timeout)
	bound := hc.Interval + time.Duration(hc.FailureThreshold)*g + hc.Timeout // IdleThreshold is Interval
	if bound > hc.DetectionBound() {
		t.Fatalf("bound %v over DetectionBound %v", bound, hc.DetectionBound())
	}
	for _, hole := range []string{holeSwallows, holeBlocks} {
		for _, at := range []time.Duration{3*hc.Interval + hc.Interval/3, 4*hc.Interval + time.Millisecond, 5*hc.Interval - time.Millisecond} {
			var got []string
			for _, traffic := range []string{quiet, aWrites, bWrites} {
				took := silentAfter(t, hc, hole, traffic, at)
				got = append(got, fmt.Sprintf("%s %v", traffic, took))
				if took > bound {
					t.Errorf("%s, %s, hole at %v: declared dead %v after the hole, want within %v", hole, traffic, at, took, bound)
				}
			}
			t.Logf("%s, hole at %v: %v (bound %v, DetectionBound %v)", hole, at, got, bound, hc.DetectionBound())
		}
	}
}

// choke black-holes the raw conns it wraps as a dead path does a TCP
// socket: once started, reads block, and writes are taken (and lost)
// until budget bytes have gone, then block; all until Close.
type choke struct {
	budget int
	on     chan struct{}
	once   sync.Once
}

func newChoke(budget int) *choke { return &choke{budget: budget, on: make(chan struct{})} }

func (h *choke) start() { h.once.Do(func() { close(h.on) }) }

func (h *choke) wrap(c net.Conn) net.Conn {
	return &chokeConn{Conn: c, h: h, left: h.budget, closed: make(chan struct{})}
}

type chokeConn struct {
	net.Conn
	h         *choke
	mu        sync.Mutex
	left      int
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *chokeConn) holed() bool {
	select {
	case <-c.h.on:
		return true
	default:
		return false
	}
}

func (c *chokeConn) Read(p []byte) (int, error) {
	if c.holed() {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.holed() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *chokeConn) Write(p []byte) (int, error) {
	if !c.holed() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	k := min(c.left, len(p))
	c.left -= k
	c.mu.Unlock()
	if k == len(p) {
		return k, nil
	}
	<-c.closed
	return k, net.ErrClosed
}

func (c *chokeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
