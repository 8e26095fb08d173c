package peerlink_test

import (
	"errors"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// faulty makes a manager's TCP transport a faultnet one and returns it
// through *ft.
func faulty(ft **faultnet.Transport) func(*peerlink.Config) {
	return func(c *peerlink.Config) {
		c.Transport = func(tc transport.Config) (transport.Transport, error) {
			inner, err := transport.NewTCP(tc)
			if err != nil {
				return nil, err
			}
			*ft = faultnet.Wrap(inner)
			return *ft, nil
		}
	}
}

func tightHealth(c *peerlink.Config) {
	c.Health = health.Config{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, FailureThreshold: 3}
}

// A peer that stops answering while its socket stays open is declared
// dead within the monitor's bound, and a persistent one is redialed.
func TestBlackHoledLinkDetectedAndRedialed(t *testing.T) {
	b := newManager(t)
	withEcho(b, t)
	var ft *faultnet.Transport
	a := newManager(t, tightHealth, fastBackoff, faulty(&ft))
	sub := a.Subscribe(0)
	if err := a.AddPersistentPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	roundTrip(t, a, b.ID(), []byte("alive"))

	cfg := health.Config{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, FailureThreshold: 3}
	silenced := time.Now()
	ft.BlackHole()
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	took := time.Since(silenced)
	if ev.Reason != peerlink.ReasonUnhealthy || ev.Err == nil {
		t.Fatalf("event %v, want reason unhealthy with the failed check's error", ev)
	}
	if bound := cfg.DetectionBound(); took > bound {
		t.Errorf("black hole found after %v, want within %v", took, bound)
	}
	t.Logf("black hole found after %v (bound %v)", took, cfg.DetectionBound())

	ft.Heal()
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	roundTrip(t, a, b.ID(), []byte("back"))
}

func TestHealthCheckAndAutoRecover(t *testing.T) {
	b := newManager(t)
	withEcho(b, t)
	var ft *faultnet.Transport
	a := newManager(t, faulty(&ft), func(c *peerlink.Config) {
		// The monitor stays out of the way; the test checks by hand.
		c.Health = health.Config{Interval: time.Hour, Timeout: 200 * time.Millisecond, FailureThreshold: 3}
		c.Backoff = peerlink.Backoff{InitialInterval: time.Hour, MaxInterval: time.Hour}
	})
	if err := a.AddPersistentPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctxT(t), b.AddrInfo()); err != nil {
		t.Fatal(err)
	}

	r, err := a.CheckConnectionHealth(ctxT(t), b.ID())
	if err != nil || !r.Healthy || r.RTT <= 0 || r.Peer != b.ID() {
		t.Fatalf("CheckConnectionHealth = %+v, %v; want healthy with an RTT", r, err)
	}
	if unhealthy, err := a.HealthCheck(ctxT(t)); err != nil || len(unhealthy) != 0 {
		t.Fatalf("HealthCheck = %v, %v; want none unhealthy", unhealthy, err)
	}
	info, _ := a.ConnectionInfo(b.ID())
	if info.Health.Samples < 2 || info.Health.RTTEWMA <= 0 {
		t.Errorf("ConnectionInfo.Health = %+v, want 2 samples and an RTT average", info.Health)
	}
	other := newIdentity(t)
	if _, err := a.CheckConnectionHealth(ctxT(t), other.ID()); !errors.Is(err, peerlink.ErrNotConnected) {
		t.Errorf("check of an unknown peer: %v, want ErrNotConnected", err)
	}

	ft.BlackHole()
	unhealthy, err := a.HealthCheck(ctxT(t))
	if err != nil || len(unhealthy) != 1 || unhealthy[0] != b.ID() {
		t.Fatalf("HealthCheck after the black hole = %v, %v; want [b]", unhealthy, err)
	}
	if a.Status(b.ID()) != peer.StatusConnected {
		t.Fatal("one failed check closed the link; the threshold is 3")
	}

	ft.Heal()
	sub := a.Subscribe(0)
	n, err := a.AutoRecover(ctxT(t))
	if err != nil || n != 1 {
		t.Fatalf("AutoRecover = %d, %v; want 1 recovered", n, err)
	}
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonUnhealthy {
		t.Errorf("old link closed with %v, want unhealthy", ev.Reason)
	}
	roundTrip(t, a, b.ID(), []byte("recovered"))
}
