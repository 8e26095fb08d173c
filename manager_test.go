package peerlink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on an event in these tests. It is generous
// because -race on a 2-core CI machine is slow; a passing run never waits
// for it.
const waitTimeout = 20 * time.Second

const echoProto = "/test/echo/1"

// newManager starts a manager on 127.0.0.1 with TCP + TLS and closes it
// when the test ends.
func newManager(t testing.TB, mods ...func(*peerlink.Config)) *peerlink.ConnectionManager {
	t.Helper()
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	cfg.Network = "peerlink-test"
	for _, mod := range mods {
		mod(&cfg)
	}
	m, err := peerlink.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func echoHandler(s *mux.Stream) { _, _ = io.Copy(s, s) }

func withEcho(m *peerlink.ConnectionManager, t testing.TB) {
	t.Helper()
	if err := m.SetStreamHandler(echoProto, echoHandler); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitEvent returns the first event on sub for which match holds.
func waitEvent(t testing.TB, sub *peerlink.Subscription, match func(peerlink.Event) bool) peerlink.Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatal("subscription closed while waiting for an event")
			}
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// waitUntil re-checks cond each time m publishes an event, until it holds.
func waitUntil(t testing.TB, sub *peerlink.Subscription, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for !cond() {
		select {
		case <-sub.C:
		case <-timer.C:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// pollUntil is for conditions with no event to wait on (a queue's
// length): it checks cond every millisecond until it holds, failing after
// waitTimeout. It never sleeps a guessed time.
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func connect(t testing.TB, from, to *peerlink.ConnectionManager) {
	t.Helper()
	if err := from.Connect(ctxT(t), to.AddrInfo()); err != nil {
		t.Fatalf("Connect %s → %s: %v", from.ID().ShortString(), to.ID().ShortString(), err)
	}
}

// roundTrip opens a stream, writes msg, and reads the echo back.
func roundTrip(t testing.TB, from *peerlink.ConnectionManager, to peer.ID, msg []byte) {
	t.Helper()
	s, err := from.OpenStream(ctxT(t), to, echoProto, mux.PriorityNormal)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	defer s.Close()
	if _, err := s.Write(msg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestThreeManagersStreamsBothWays(t *testing.T) {
	a, b, c := newManager(t), newManager(t), newManager(t)
	for _, m := range []*peerlink.ConnectionManager{a, b, c} {
		withEcho(m, t)
	}
	connect(t, a, b)
	connect(t, b, c)
	connect(t, c, a)

	for _, pair := range [][2]*peerlink.ConnectionManager{{a, b}, {b, a}, {b, c}, {c, b}, {c, a}, {a, c}} {
		from, to := pair[0], pair[1]
		roundTrip(t, from, to.ID(), []byte(fmt.Sprintf("hello from %s", from.ID().ShortString())))
	}
	for _, m := range []*peerlink.ConnectionManager{a, b, c} {
		if got := m.ConnectionCount(); got != 2 {
			t.Errorf("%s: ConnectionCount = %d, want 2", m.ID().ShortString(), got)
		}
		if got := len(m.Peers()); got != 2 {
			t.Errorf("%s: len(Peers) = %d, want 2", m.ID().ShortString(), got)
		}
	}
	if got := a.Status(b.ID()); got != peer.StatusConnected {
		t.Errorf("Status = %v, want connected", got)
	}
	info, err := a.ConnectionInfo(b.ID())
	if err != nil {
		t.Fatal(err)
	}
	if info.Direction != transport.Outbound || info.Peer != b.ID() || info.BytesOut == 0 || info.BytesIn == 0 || info.OpenedAt.IsZero() {
		t.Errorf("ConnectionInfo = %+v", info)
	}
	if info.RemoteAddr != b.Addrs()[0] {
		t.Errorf("RemoteAddr = %s, want %s", info.RemoteAddr, b.Addrs()[0])
	}
}

func TestEcho8MiBIntact(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	connect(t, a, b)

	payload := make([]byte, 8<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	s, err := a.OpenStream(ctxT(t), b.ID(), echoProto, mux.PriorityLow)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeErr := make(chan error, 1)
	go func() {
		_, err := s.Write(payload)
		writeErr <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, s, int64(len(payload))); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("echoed 8 MiB differ from what was sent")
	}
	info, err := b.ConnectionInfo(a.ID())
	if err != nil {
		t.Fatal(err)
	}
	if info.BytesIn < 8<<20 || info.BytesOut < 8<<20 {
		t.Errorf("remote counted %d in, %d out; want at least 8 MiB each", info.BytesIn, info.BytesOut)
	}
}

func TestDialWrongIDFails(t *testing.T) {
	a, b := newManager(t), newManager(t)
	impostor, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// impostor's ID at b's address: b proves a different key.
	err = a.Connect(ctxT(t), peer.AddrInfo{ID: impostor.ID(), Addrs: b.Addrs()})
	if !errors.Is(err, transport.ErrPeerIDMismatch) {
		t.Fatalf("Connect to wrong ID: err = %v, want ErrPeerIDMismatch", err)
	}
	if a.ConnectionCount() != 0 {
		t.Errorf("ConnectionCount = %d after a failed dial", a.ConnectionCount())
	}
}

func TestNetworkMismatchRefused(t *testing.T) {
	a := newManager(t)
	b := newManager(t, func(c *peerlink.Config) { c.Network = "other-chain" })
	err := a.Connect(ctxT(t), b.AddrInfo())
	if !errors.Is(err, transport.ErrNetworkMismatch) {
		t.Fatalf("err = %v, want ErrNetworkMismatch", err)
	}
}

func TestGaterRefusals(t *testing.T) {
	errBanned := errors.New("banned by test")
	t.Run("local dial", func(t *testing.T) {
		b := newManager(t)
		a := newManager(t, func(c *peerlink.Config) {
			c.Gater = transport.GaterFuncs{Dial: func(id peer.ID, _ string) error {
				if id == b.ID() {
					return errBanned
				}
				return nil
			}}
		})
		err := a.Connect(ctxT(t), b.AddrInfo())
		if !errors.Is(err, transport.ErrGated) || !errors.Is(err, errBanned) {
			t.Fatalf("err = %v, want ErrGated wrapping the gater's error", err)
		}
	})
	t.Run("remote secured", func(t *testing.T) {
		b := newManager(t, func(c *peerlink.Config) {
			c.Gater = transport.GaterFuncs{Secured: func(transport.Direction, peer.ID, net.Addr) error { return errBanned }}
		})
		a := newManager(t)
		err := a.Connect(ctxT(t), b.AddrInfo())
		var refused *transport.RemoteRefusedError
		if !errors.As(err, &refused) || refused.Code != transport.RefusalGated {
			t.Fatalf("err = %v, want RemoteRefusedError with code gated", err)
		}
		if refused.Reason != errBanned.Error() {
			t.Errorf("reason = %q, want %q", refused.Reason, errBanned.Error())
		}
		if b.ConnectionCount() != 0 {
			t.Errorf("refusing side has %d links", b.ConnectionCount())
		}
	})
}

func TestUnknownProtocolReset(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), "/nobody/home/1", mux.PriorityHigh)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("anyone?")); err != nil {
		// The reset may already have arrived; that is fine too.
		if !errors.Is(err, mux.ErrProtocolNotSupported) {
			t.Fatalf("Write err = %v, want nil or ErrProtocolNotSupported", err)
		}
	}
	_ = s.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err = s.Read(make([]byte, 1))
	if !errors.Is(err, mux.ErrProtocolNotSupported) || !errors.Is(err, mux.ErrStreamReset) {
		t.Fatalf("Read err = %v, want ErrProtocolNotSupported and ErrStreamReset", err)
	}
	if _, err := s.Write([]byte("again")); !errors.Is(err, mux.ErrProtocolNotSupported) {
		t.Fatalf("Write after reset err = %v, want ErrProtocolNotSupported", err)
	}
	// The link itself is fine.
	roundTrip(t, a, b.ID(), []byte("still here"))
}

func TestConcurrentConnectsShareOneDial(t *testing.T) {
	var dials atomic.Int32
	b := newManager(t)
	a := newManager(t, func(c *peerlink.Config) {
		c.Gater = transport.GaterFuncs{Dial: func(peer.ID, string) error {
			dials.Add(1)
			return nil
		}}
	})
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- a.Connect(ctxT(t), b.AddrInfo())
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Connect: %v", err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for %d concurrent Connect calls, want 1", n, callers)
	}
	if n := a.ConnectionCount(); n != 1 {
		t.Errorf("ConnectionCount = %d, want 1", n)
	}
}

func TestSimultaneousDialKeepsOneLink(t *testing.T) {
	for round := range 10 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			// The two dials must cross: each waits, once connected and
			// before its handshake, for the other to have connected too.
			// (Otherwise one side's Connect, scheduled late, finds the
			// other's link already open and rightly uses it.)
			var (
				targets sync.Map // the two listen addresses
				dialing atomic.Int32
				both    = make(chan struct{})
			)
			crossing := func(c *peerlink.Config) {
				c.Transport = func(tc transport.Config) (transport.Transport, error) {
					tc.RawConnWrapper = func(raw net.Conn) net.Conn {
						if _, ok := targets.Load(raw.RemoteAddr().String()); ok {
							if n := dialing.Add(1); n == 2 {
								close(both)
							} else if n < 2 {
								select {
								case <-both:
								case <-time.After(10 * time.Second):
								}
							}
						}
						return raw
					}
					return transport.NewTCP(tc)
				}
			}
			a, b := newManager(t, crossing), newManager(t, crossing)
			targets.Store(a.Addrs()[0], true)
			targets.Store(b.Addrs()[0], true)
			withEcho(a, t)
			withEcho(b, t)
			subA, subB := a.Subscribe(0), b.Subscribe(0)
			start := make(chan struct{})
			errs := make(chan error, 2)
			for _, pair := range [][2]*peerlink.ConnectionManager{{a, b}, {b, a}} {
				go func() {
					<-start
					errs <- pair[0].Connect(ctxT(t), pair[1].AddrInfo())
				}()
			}
			close(start)
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatalf("Connect: %v", err)
				}
			}
			smaller, larger := a, b
			if b.ID().Less(a.ID()) {
				smaller, larger = b, a
			}
			// Both ends settle on the same single link: dialed by the smaller ID.
			settled := func(m *peerlink.ConnectionManager, other peer.ID, want transport.Direction) func() bool {
				return func() bool {
					info, err := m.ConnectionInfo(other)
					return err == nil && info.Direction == want && m.ConnectionCount() == 1
				}
			}
			waitUntil(t, subA, "a settles", settled(a, b.ID(), map[bool]transport.Direction{true: transport.Outbound, false: transport.Inbound}[a == smaller]))
			waitUntil(t, subB, "b settles", settled(b, a.ID(), map[bool]transport.Direction{true: transport.Outbound, false: transport.Inbound}[b == smaller]))
			sInfo, _ := smaller.ConnectionInfo(larger.ID())
			lInfo, _ := larger.ConnectionInfo(smaller.ID())
			if sInfo.LocalAddr != lInfo.RemoteAddr || sInfo.RemoteAddr != lInfo.LocalAddr {
				t.Fatalf("the two ends hold different links: %+v vs %+v", sInfo, lInfo)
			}
			roundTrip(t, a, b.ID(), []byte("one link"))
			roundTrip(t, b, a.ID(), []byte("both ways"))
		})
	}
}

func TestDisconnectEvents(t *testing.T) {
	a, b := newManager(t), newManager(t)
	subA, subB := a.Subscribe(0), b.Subscribe(0)
	connect(t, a, b)
	ev := waitEvent(t, subA, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if ev.Peer != b.ID() || ev.Direction != transport.Outbound {
		t.Errorf("connected event = %v", ev)
	}
	ev = waitEvent(t, subB, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if ev.Peer != a.ID() || ev.Direction != transport.Inbound {
		t.Errorf("connected event on the remote = %v", ev)
	}

	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, subA, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonLocal || ev.Peer != b.ID() {
		t.Errorf("local side: %v, want reason local", ev)
	}
	ev = waitEvent(t, subB, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonRemote || ev.Peer != a.ID() {
		t.Errorf("remote side: %v, want reason closed by remote", ev)
	}
	if err := a.Disconnect(b.ID()); !errors.Is(err, peerlink.ErrNotConnected) {
		t.Errorf("second Disconnect: %v, want ErrNotConnected", err)
	}
	if got := a.Status(b.ID()); got != peer.StatusDisconnected {
		t.Errorf("Status after Disconnect = %v", got)
	}

	// The remote shutting down is reported too.
	connect(t, a, b)
	// b registers the inbound link after a's dial returns: wait for it.
	waitEvent(t, subB, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, subA, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonRemote && ev.Reason != peerlink.ReasonError {
		t.Errorf("after remote Close: %v", ev)
	}
	ev = waitEvent(t, subB, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if ev.Reason != peerlink.ReasonShutdown {
		t.Errorf("closing side: %v, want reason shutdown", ev)
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	a, b := newManager(t), newManager(t)
	sub := a.Subscribe(1) // never read
	for range 3 {
		connect(t, a, b)
		if err := a.Disconnect(b.ID()); err != nil {
			t.Fatal(err)
		}
	}
	// 6 events were published, one fits: the manager went on regardless.
	watch := a.Subscribe(0)
	connect(t, a, b)
	waitEvent(t, watch, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if sub.Dropped() == 0 {
		t.Error("no events counted as dropped for a full subscriber")
	}
}

func TestLimits(t *testing.T) {
	t.Run("MaxConnections outbound", func(t *testing.T) {
		a := newManager(t, func(c *peerlink.Config) { c.MaxConnections, c.MaxInboundConnections = 1, 1 })
		b, c := newManager(t), newManager(t)
		connect(t, a, b)
		if err := a.Connect(ctxT(t), c.AddrInfo()); !errors.Is(err, peerlink.ErrConnectionLimit) {
			t.Fatalf("err = %v, want ErrConnectionLimit", err)
		}
	})
	t.Run("MaxConnections inbound", func(t *testing.T) {
		a := newManager(t, func(c *peerlink.Config) { c.MaxConnections, c.MaxInboundConnections = 1, 0 })
		b, c := newManager(t), newManager(t)
		connect(t, b, a)
		err := c.Connect(ctxT(t), a.AddrInfo())
		var refused *transport.RemoteRefusedError
		if !errors.As(err, &refused) || refused.Code != transport.RefusalLimit || refused.Reason != peerlink.ErrConnectionLimit.Error() {
			t.Fatalf("err = %v, want a limit refusal naming ErrConnectionLimit", err)
		}
	})
	t.Run("MaxInboundConnections", func(t *testing.T) {
		a := newManager(t, func(c *peerlink.Config) { c.MaxConnections, c.MaxInboundConnections = 3, 1 })
		b, c, d := newManager(t), newManager(t), newManager(t)
		connect(t, b, a)
		err := c.Connect(ctxT(t), a.AddrInfo())
		var refused *transport.RemoteRefusedError
		if !errors.As(err, &refused) || refused.Code != transport.RefusalLimit || refused.Reason != peerlink.ErrInboundLimit.Error() {
			t.Fatalf("err = %v, want a limit refusal naming ErrInboundLimit", err)
		}
		// Outbound slots stay free for the node's own dials.
		connect(t, a, d)
	})
	t.Run("MaxStreamsPerPeer", func(t *testing.T) {
		failFast := func(c *peerlink.Config) {
			c.MaxStreamsPerPeer, c.ReservedStreams, c.FailFastStreams = 2, -1, true
		}
		a, b := newManager(t, failFast), newManager(t, failFast)
		withEcho(b, t)
		connect(t, a, b)
		var open []*mux.Stream
		for range 2 {
			s, err := a.OpenStream(ctxT(t), b.ID(), echoProto, mux.PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, s)
		}
		if _, err := a.OpenStream(ctxT(t), b.ID(), echoProto, mux.PriorityNormal); !errors.Is(err, peerlink.ErrStreamLimit) {
			t.Fatalf("third OpenStream: %v, want ErrStreamLimit", err)
		}
		// Close, then read to EOF: the remote's FIN comes after its handler
		// has returned, so from then on the slot is free on both ends.
		for _, s := range open {
			s.Close()
			if _, err := io.Copy(io.Discard, s); err != nil {
				t.Fatalf("drain: %v", err)
			}
		}
		roundTrip(t, a, b.ID(), []byte("slot freed"))
	})
	t.Run("inbound streams past MaxStreamsPerPeer are reset", func(t *testing.T) {
		a := newManager(t) // opener allows 256
		b := newManager(t, func(c *peerlink.Config) { c.MaxStreamsPerPeer = 1 })
		block := make(chan struct{})
		defer close(block)
		if err := b.SetStreamHandler("/hold/1", func(s *mux.Stream) { <-block }); err != nil {
			t.Fatal(err)
		}
		connect(t, a, b)
		first, err := a.OpenStream(ctxT(t), b.ID(), "/hold/1", mux.PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if _, err := first.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		second, err := a.OpenStream(ctxT(t), b.ID(), "/hold/1", mux.PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		_, _ = second.Write([]byte{2})
		_ = second.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := second.Read(make([]byte, 1)); !errors.Is(err, mux.ErrStreamLimit) {
			t.Fatalf("second stream read: %v, want ErrStreamLimit", err)
		}
	})
}

func TestConfigValidationNamesField(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*peerlink.Config)
	}{
		{"DialTimeout", func(c *peerlink.Config) { c.DialTimeout = -time.Second }},
		{"MaxConnections", func(c *peerlink.Config) { c.MaxConnections = -1 }},
		{"MaxInboundConnections", func(c *peerlink.Config) { c.MaxConnections, c.MaxInboundConnections = 5, 10 }},
		{"MaxStreamsPerPeer", func(c *peerlink.Config) { c.MaxStreamsPerPeer = -3 }},
		{"ListenAddrs[0]", func(c *peerlink.Config) { c.ListenAddrs = []string{""} }},
		{"Network", func(c *peerlink.Config) { c.Network = "has space" }},
	} {
		cfg := peerlink.DefaultConfig()
		tc.mod(&cfg)
		_, err := peerlink.New(cfg)
		if !errors.Is(err, peerlink.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", tc.field, err)
			continue
		}
		if !bytes.Contains([]byte(err.Error()), []byte(tc.field)) {
			t.Errorf("error %q does not name %s", err, tc.field)
		}
	}
}

func TestCloseIsFinalAndLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	a, err := peerlink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := peerlink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withEcho(a, t)
	withEcho(b, t)
	sub := a.Subscribe(0)
	if err := a.Connect(ctxT(t), b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	// Leave a stream open in each direction and a handler running.
	s1, err := a.OpenStream(ctxT(t), b.ID(), echoProto, mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s2, err := b.OpenStream(ctxT(t), a.ID(), echoProto, mux.PriorityCritical)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.C { // drained, then closed by Close
	}
	if err := a.Connect(context.Background(), b.AddrInfo()); !errors.Is(err, peerlink.ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
	if _, err := a.OpenStream(context.Background(), b.ID(), echoProto, mux.PriorityLow); !errors.Is(err, peerlink.ErrClosed) {
		t.Errorf("OpenStream after Close: %v", err)
	}
	if err := a.Listen("127.0.0.1:0"); !errors.Is(err, peerlink.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if err := a.AddPeer(b.AddrInfo()); !errors.Is(err, peerlink.ErrClosed) {
		t.Errorf("AddPeer after Close: %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	a := newManager(t)
	other, _ := peer.GenerateIdentity()
	if err := a.Connect(ctxT(t), peer.AddrInfo{ID: other.ID()}); !errors.Is(err, peerlink.ErrNoAddresses) {
		t.Errorf("unknown address: %v, want ErrNoAddresses", err)
	}
	if err := a.Connect(ctxT(t), a.AddrInfo()); !errors.Is(err, peerlink.ErrDialSelf) {
		t.Errorf("self: %v, want ErrDialSelf", err)
	}
	if err := a.Connect(ctxT(t), peer.AddrInfo{}); !errors.Is(err, peerlink.ErrInvalidPeer) {
		t.Errorf("zero ID: %v, want ErrInvalidPeer", err)
	}
	if err := a.SetStreamHandler("bad protocol", echoHandler); !errors.Is(err, mux.ErrInvalidProtocol) {
		t.Errorf("bad protocol: %v, want ErrInvalidProtocol", err)
	}
	// Address book: AddPeer, then Connect by ID alone.
	b := newManager(t)
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctxT(t), peer.AddrInfo{ID: b.ID()}); err != nil {
		t.Fatalf("Connect from the address book: %v", err)
	}
}

// The dialer's Connect returns once the acceptor has admitted the link,
// a moment before the acceptor has registered it: a stream the acceptor
// opens back at once must wait for that link, not fail for want of the
// dialer's address.
func TestAcceptorOpensStreamBackAtOnce(t *testing.T) {
	for range 20 {
		a, b := newManager(t), newManager(t)
		withEcho(a, t)
		connect(t, a, b)
		roundTrip(t, b, a.ID(), []byte("right back"))
	}
}

func TestOpenStreamConnectsOnDemand(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, b.ID(), []byte("dialed for me"))
	if a.Status(b.ID()) != peer.StatusConnected {
		t.Errorf("Status = %v", a.Status(b.ID()))
	}
}
