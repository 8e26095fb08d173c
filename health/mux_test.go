package health_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

// sessionTarget is a mux session as a health Target, as the manager
// makes one for each link.
type sessionTarget struct{ s *mux.Session }

func (t sessionTarget) Peer() peer.ID                                   { return t.s.RemotePeer() }
func (t sessionTarget) Ping(ctx context.Context) (time.Duration, error) { return t.s.PingContext(ctx) }
func (t sessionTarget) LastActivity() time.Time                         { return t.s.LastRead() }

// muteConn drops every Write once mute is set: the remote stops hearing
// from us, so never answers a ping.
type muteConn struct {
	net.Conn
	mute atomic.Bool
}

func (c *muteConn) Write(b []byte) (int, error) {
	if c.mute.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func muxPeer(t *testing.T, seed byte) peer.ID {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	id, err := peer.IDFromPublicKey(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestMonitorOverMux runs a Monitor over two real mux sessions (in real
// time, over net.Pipe): the one whose link goes mute is declared dead
// with a deadline error; the live one is not.
func TestMonitorOverMux(t *testing.T) {
	cfg := mux.DefaultConfig()
	cfg.EnableKeepAlive = false
	local := muxPeer(t, 1)
	newLink := func(seed byte) (*mux.Session, *muteConn) {
		a, b := net.Pipe()
		mc := &muteConn{Conn: a}
		remote := muxPeer(t, seed)
		s, err := mux.NewSession(mc, local, remote, true, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := mux.NewSession(b, remote, local, false, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			r.Close()
		})
		return s, mc
	}
	liveSess, _ := newLink(2)
	muteSess, mc := newLink(3)

	now := time.Now()
	links := []struct {
		t  sessionTarget
		st *health.State
	}{
		{sessionTarget{liveSess}, health.NewState(now)},
		{sessionTarget{muteSess}, health.NewState(now)},
	}
	dead := make(chan health.Result, 2)
	m, err := health.NewMonitor(health.MonitorConfig{
		Config: health.Config{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, FailureThreshold: 3},
		Targets: func(yield func(health.Target, *health.State) bool) {
			for _, l := range links {
				if !yield(l.t, l.st) {
					return
				}
			}
		},
		OnDead: func(_ health.Target, r health.Result) { dead <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	mc.mute.Store(true)
	defer run(m)()

	select {
	case r := <-dead:
		if r.Peer != muteSess.RemotePeer() {
			t.Fatalf("declared dead: %v, want the mute link", r.Peer.ShortString())
		}
		if !errors.Is(r.Err, context.DeadlineExceeded) || !errors.Is(r.Err, os.ErrDeadlineExceeded) {
			t.Fatalf("fatal probe error %v, want a deadline", r.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mute link not declared dead")
	}
	if st := links[0].st.Snapshot(); st.Dead || st.Samples == 0 {
		t.Fatalf("live link: %+v", st)
	}
}
