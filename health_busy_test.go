package peerlink_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// TestBusyLinkBlackHoledOverTCP: in real time over TCP and TLS, the black
// hole above TLS (faultnet), a link carrying a bulk stream is declared
// dead within DetectionBound of the hole. (health/internal/linktest
// measures busy against idle links in virtual time.)
func TestBusyLinkBlackHoledOverTCP(t *testing.T) {
	hc := health.Config{Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, FailureThreshold: 3}
	var ft *faultnet.Transport
	withHealth := func(c *peerlink.Config) { c.Health = hc }
	b := newManager(t, withHealth)
	a := newManager(t, withHealth, faulty(&ft))
	if err := b.SetStreamHandler(sinkProto, func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
		t.Fatal(err)
	}
	sub := a.Subscribe(0)
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), sinkProto, mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() {
		s.Reset() // the writer's Write returns, even on a test that failed early
		wg.Wait()
	}()
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	})
	time.Sleep(2 * hc.Interval)
	if info, _ := a.ConnectionInfo(b.ID()); info.BytesOut < 1<<20 {
		t.Fatalf("%d bytes out: not busy", info.BytesOut)
	}
	silenced := time.Now()
	ft.BlackHole()
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	took := time.Since(silenced)
	if ev.Reason != peerlink.ReasonUnhealthy {
		t.Fatalf("link closed with %v (%v), want unhealthy", ev.Reason, ev.Err)
	}
	if bound := hc.DetectionBound(); took > bound {
		t.Errorf("busy link declared dead %v after the hole, want within %v", took, bound)
	}
	t.Logf("busy link declared dead %v after the hole (DetectionBound %v)", took, hc.DetectionBound())
}
