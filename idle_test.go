package peerlink_test

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// streamsOn returns the streams open on m's link to id.
func streamsOn(m *peerlink.ConnectionManager, id peer.ID) int {
	info, err := m.ConnectionInfo(id)
	if err != nil {
		return -1
	}
	return info.Streams
}

// TestEvictIdleClosesOnlyIdleUnprotectedLinks: a link with no stream for
// Idle.Timeout is closed, whichever side opened its streams; a link with
// a stream open, one used within the timeout, a protected peer's and a
// persistent peer's stay.
func TestEvictIdleClosesOnlyIdleUnprotectedLinks(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Idle = peerlink.IdleConfig{Timeout: 5 * time.Minute, CleanupInterval: -1}
		c.LimitExempt = loopbackExempt
	})
	withEcho(a, t)
	sub := a.Subscribe(64)
	idle, busy, inUsed, outUsed, prot, pers := newManager(t), newManager(t), newManager(t), newManager(t), newManager(t), newManager(t)
	withEcho(outUsed, t)
	all := []*peerlink.ConnectionManager{idle, busy, inUsed, outUsed, prot, pers}
	for _, p := range all {
		connect(t, p, a)
	}
	connectedTo(t, a, sub, len(all))
	if err := a.Protect(prot.ID(), "keep"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddPersistentPeer(pers.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	// busy holds a stream open on a (a's handler echoes until it closes).
	held, err := busy.OpenStream(ctxT(t), a.ID(), echoProto, mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(held, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	fake.Advance(4 * time.Minute)
	roundTrip(t, inUsed, a.ID(), []byte("in"))   // a stream a accepted
	roundTrip(t, a, outUsed.ID(), []byte("out")) // a stream a opened
	pollUntil(t, "the used links' streams are done", func() bool {
		return streamsOn(a, inUsed.ID()) == 0 && streamsOn(a, outUsed.ID()) == 0
	})
	fake.Advance(time.Minute + time.Second) // idle: 5:01 without a stream; the used ones: 1:01

	if n := a.EvictIdle(); n != 1 {
		t.Fatalf("EvictIdle = %d, want 1", n)
	}
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Peer != idle.ID() || ev.Reason != peerlink.ReasonIdle {
		t.Fatalf("closed %s (%v), want the idle peer, idle", ev.Peer.ShortString(), ev.Reason)
	}
	want := idsOf(all[1:])
	if got := a.Peers(); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}

	// Five minutes on, the used links are idle; busy's stream ended after
	// the last look, so its idle time counts from the next one.
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "busy's stream is done", func() bool { return streamsOn(a, busy.ID()) == 0 })
	fake.Advance(5 * time.Minute)
	if n := a.EvictIdle(); n != 2 {
		t.Fatalf("EvictIdle five minutes on = %d, want 2", n)
	}
	fake.Advance(5 * time.Minute)
	if n := a.EvictIdle(); n != 1 {
		t.Fatalf("EvictIdle ten minutes on = %d, want 1 (busy)", n)
	}
	want = idsOf([]*peerlink.ConnectionManager{prot, pers})
	if got := a.Peers(); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want only the protected and persistent ones %v", got, want)
	}
	// The record stays (its history, a score): given an address, the
	// peer is redialed on its next use.
	if _, ok := a.PeerHistory(outUsed.ID()); !ok {
		t.Fatal("the idle peer's record is gone")
	}
	if err := a.AddPeer(outUsed.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	// (Once the remote has seen the old link go: a link it still holds
	// would make it refuse ours as a duplicate.)
	pollUntil(t, "the remote sees the link closed", func() bool { return len(outUsed.Peers()) == 0 })
	roundTrip(t, a, outUsed.ID(), []byte("again"))
}

// TestCleanupTaskEvictsIdleLinksAndStopsOnClose: the cleanup task closes
// an idle link on its own, in real time, and is gone once Close returns.
func TestCleanupTaskEvictsIdleLinksAndStopsOnClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	newNode := func(idle peerlink.IdleConfig) *peerlink.ConnectionManager {
		c := peerlink.DefaultConfig()
		c.ListenAddrs = []string{"127.0.0.1:0"}
		c.Network = "peerlink-test"
		c.Idle = idle
		m, err := peerlink.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := newNode(peerlink.IdleConfig{Timeout: 50 * time.Millisecond}) // cleanup every 25 ms
	b := newNode(peerlink.IdleConfig{Timeout: -1})
	defer b.Close()
	sub := a.Subscribe(16)
	connect(t, a, b)
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonIdle || ev.Peer != b.ID() {
		t.Fatalf("link closed with %v, want idle", ev)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := a.EvictIdle(); n != 0 {
		t.Fatalf("EvictIdle after Close = %d", n)
	}
}

// TestEvictUnhealthyClosesFailingLinks: a link whose health check failed,
// with nothing arrived since, is closed by EvictUnhealthy (the monitor
// would wait for two more failures); a healthy one stays.
func TestEvictUnhealthyClosesFailingLinks(t *testing.T) {
	var ft *faultnet.Transport
	hc := health.Config{Timeout: 100 * time.Millisecond, FailureThreshold: 3}
	a := newManager(t, func(c *peerlink.Config) { c.Health = hc; c.DisableHealthMonitor = true })
	sick := newManager(t, faulty(&ft))
	well := newManager(t)
	sub := a.Subscribe(16)
	connect(t, a, sick)
	connect(t, a, well)
	if n := a.EvictUnhealthy(); n != 0 {
		t.Fatalf("EvictUnhealthy with healthy links = %d", n)
	}
	ft.BlackHole()
	failed, err := a.HealthCheck(ctxT(t))
	if err != nil || len(failed) != 1 || failed[0] != sick.ID() {
		t.Fatalf("HealthCheck = %v, %v; want the black-holed peer", failed, err)
	}
	if n := a.EvictUnhealthy(); n != 1 {
		t.Fatalf("EvictUnhealthy = %d, want 1", n)
	}
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Peer != sick.ID() || ev.Reason != peerlink.ReasonUnhealthy || ev.Err == nil {
		t.Fatalf("closed %v, want the black-holed peer, unhealthy, with the check's error", ev)
	}
	if errors.Is(ev.Err, nil) {
		t.Fatal("no error")
	}
	if got := a.Peers(); !slices.Equal(got, []peer.ID{well.ID()}) {
		t.Fatalf("peers %v, want only the healthy one", got)
	}
}
