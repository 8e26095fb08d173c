package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

func TestDialAccept(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, nil)
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		accepted := acceptAsync(t, l)

		dc, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer dc.Close()
		var ac Conn
		select {
		case ac = <-accepted:
		case <-time.After(waitLimit):
			t.Fatal("no accepted conn")
		}
		if ac == nil {
			t.Fatal("accept failed")
		}
		defer ac.Close()

		if dc.LocalPeer() != b.ID() || dc.RemotePeer() != a.ID() || dc.Direction() != Outbound {
			t.Errorf("dialer conn: local %s remote %s %v", dc.LocalPeer(), dc.RemotePeer(), dc.Direction())
		}
		if ac.LocalPeer() != a.ID() || ac.RemotePeer() != b.ID() || ac.Direction() != Inbound {
			t.Errorf("acceptor conn: local %s remote %s %v", ac.LocalPeer(), ac.RemotePeer(), ac.Direction())
		}
		if got, want := dc.RemoteAddr().String(), l.Addr().String(); got != want {
			t.Errorf("dialer RemoteAddr %s, want listener's %s", got, want)
		}
		if dc.LocalAddr().String() != ac.RemoteAddr().String() {
			t.Errorf("dialer LocalAddr %s != acceptor RemoteAddr %s", dc.LocalAddr(), ac.RemoteAddr())
		}

		// Data both ways.
		echo(t, dc, ac, "ping from dialer")
		echo(t, ac, dc, "pong from listener")

		switch e.(type) {
		case tcpEnv:
			for _, c := range []Conn{dc, ac} {
				tc, ok := c.(TLSConn)
				if !ok {
					t.Fatalf("%T is not a TLSConn", c)
				}
				cs := tc.ConnectionState()
				if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != ALPN || len(cs.PeerCertificates) != 1 {
					t.Errorf("connection state: version %x alpn %q certs %d", cs.Version, cs.NegotiatedProtocol, len(cs.PeerCertificates))
				}
			}
		case memEnv:
			if n := dc.LocalAddr().Network(); n != "memory" {
				t.Errorf("memory conn address network %q", n)
			}
		}

		if s := b.stats(); s.OutboundOK != 1 || s.OutboundFailed != 0 {
			t.Errorf("dialer stats %+v", s)
		}
		if s := a.stats(); s.InboundOK != 1 || s.InboundFailed != 0 {
			t.Errorf("listener stats %+v", s)
		}
	})
}

func echo(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := from.Write([]byte(msg))
		errc <- err
	}()
	_ = to.SetReadDeadline(time.Now().Add(waitLimit))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	_ = to.SetReadDeadline(time.Time{})
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// The handshake deadline must not survive the handshake: a link idle for
// longer than HandshakeTimeout still works.
func TestDeadlineCleared(t *testing.T) {
	// The handshake's deadline was set before dialPair returned, so a
	// write one timeout (and a margin) after that comes past it. The
	// timeout is long enough for a TLS handshake under -race on a busy
	// machine: at 50 ms the handshake itself timed out in CI-like runs.
	const timeout = 400 * time.Millisecond
	forEachEnv(t, func(t *testing.T, e env) {
		dc, ac := dialPair(t, e, func(c *Config) { c.HandshakeTimeout = timeout })
		timer := time.AfterFunc(timeout+100*time.Millisecond, func() { dc.Write([]byte("late")) })
		defer timer.Stop()
		buf := make([]byte, 4)
		_ = ac.SetReadDeadline(time.Now().Add(waitLimit))
		if _, err := io.ReadFull(ac, buf); err != nil {
			t.Fatalf("read after idle: %v", err)
		}
	})
}

func TestPeerIDMismatch(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, nil)
		b := newNode(t, e, nil)
		other, _ := peer.GenerateIdentity()
		l := a.listen(t, e)

		_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), other.ID())
		wantIs(t, err, ErrPeerIDMismatch)
		if !strings.Contains(err.Error(), other.ID().String()) || !strings.Contains(err.Error(), a.ID().String()) {
			t.Errorf("error should name expected and got: %v", err)
		}
		ev := a.waitEvent(t, "failed")
		t.Logf("dialer: %v", err)
		t.Logf("listener: %v", ev.err)
		if _, ok := e.(tcpEnv); ok {
			// TLS tells the listener only that its certificate was refused.
			wantIs(t, ev.err, ErrCertificateRejected)
		}
		if s := a.stats(); s.InboundOK != 0 {
			t.Errorf("listener admitted a link: %+v", s)
		}
		if s := b.stats(); s.OutboundFailed != 1 {
			t.Errorf("dialer stats %+v", s)
		}
	})
}

func TestNetworkMismatch(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, func(c *Config) { c.Network = "net-a" })
		b := newNode(t, e, func(c *Config) { c.Network = "net-b" })
		l := a.listen(t, e)

		_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		wantIs(t, err, ErrNetworkMismatch)
		if !strings.Contains(err.Error(), `"net-a"`) || !strings.Contains(err.Error(), `"net-b"`) {
			t.Errorf("dialer error should name both networks: %v", err)
		}
		ev := a.waitEvent(t, "failed")
		wantIs(t, ev.err, ErrNetworkMismatch)
		if !strings.Contains(ev.err.Error(), `"net-a"`) || !strings.Contains(ev.err.Error(), `"net-b"`) {
			t.Errorf("listener error should name both networks: %v", ev.err)
		}
		t.Logf("dialer: %v", err)
		t.Logf("listener: %v", ev.err)
	})
}

func TestSilentClientDropped(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		const timeout = 200 * time.Millisecond
		a := newNode(t, e, func(c *Config) {
			c.HandshakeTimeout = timeout
			c.MaxPendingHandshakes = 1
		})
		b := newNode(t, e, nil)
		l := a.listen(t, e)

		raw := e.rawDial(t, l.Addr().String())
		elapsed := waitClosed(t, raw)
		if elapsed < timeout/2 {
			t.Errorf("silent client dropped after %v, before the %v timeout", elapsed, timeout)
		}
		ev := a.waitEvent(t, "failed")
		wantIs(t, ev.err, ErrHandshakeTimeout)
		t.Logf("listener: %v (after %v)", ev.err, elapsed)

		// Its slot is free again: a real dial gets through.
		accepted := acceptAsync(t, l)
		c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		if err != nil {
			t.Fatalf("dial after the silent client: %v", err)
		}
		c.Close()
		if ac := <-accepted; ac == nil {
			t.Fatal("accept failed")
		}
		if s := a.stats(); s.InboundFailed != 1 || s.InboundOK != 1 || s.InboundOverLimit != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestDialHandshakeTimeout(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		b := newNode(t, e, func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
		addr, _ := e.silentListener(t)
		_, err := b.tr.Dial(context.Background(), addr, b.ID())
		wantIs(t, err, ErrHandshakeTimeout)
		t.Logf("dialer: %v", err)
	})
}

func TestMaxPendingHandshakes(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		const max = 3
		a := newNode(t, e, func(c *Config) {
			c.MaxPendingHandshakes = max
			// Pending sockets that have spoken are evicted only once
			// their handshake has run this long: never, in this test.
			c.FirstByteTimeout = time.Minute
		})
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		addr := l.Addr().String()

		pending := make([]net.Conn, max)
		for i := range pending {
			pending[i] = e.rawDial(t, addr)
			a.waitEvent(t, "start")
			if _, err := pending[i].Write([]byte{0x16}); err != nil {
				t.Fatal(err)
			}
			a.waitEvent(t, "spoke")
		}
		if p := a.stats().InboundPending; p != max {
			t.Fatalf("pending %d, want %d", p, max)
		}
		// A full table of handshakes under way: a new socket is refused,
		// told so by the marker.
		extra := e.rawDial(t, addr)
		start := time.Now()
		if got := readUntilClosed(t, extra); string(got) != "PLNK\x01" {
			t.Errorf("socket over the limit read %q, want the busy marker", got)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("socket over the limit closed after %v", d)
		}
		ev := a.waitEvent(t, "overlimit")
		wantIs(t, ev.err, ErrListenerBusy)
		for _, c := range pending {
			assertOpen(t, c)
		}

		// Freeing one slot lets a real dial through.
		pending[0].Close()
		a.waitEvent(t, "failed")
		accepted := acceptAsync(t, l)
		c, err := b.tr.Dial(dialCtx(t), addr, a.ID())
		if err != nil {
			t.Fatalf("dial after freeing a slot: %v", err)
		}
		c.Close()
		if ac := <-accepted; ac == nil {
			t.Fatal("accept failed")
		}
		if s := a.stats(); s.InboundOverLimit != 1 || s.InboundOK != 1 || s.InboundFailed != 1 ||
			s.InboundEvictedSilent != 0 || s.InboundEvictedSlow != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestGaterDial(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		blocked := errors.New("blocked by test")
		var gotID peer.ID
		var gotAddr string
		a := newNode(t, e, nil)
		b := newNode(t, e, func(c *Config) {
			c.Gater = GaterFuncs{Dial: func(id peer.ID, addr string) error {
				gotID, gotAddr = id, addr
				return blocked
			}}
		})
		// Nothing listens there: touching the network would fail otherwise.
		addr := "127.0.0.1:1"
		if _, ok := e.(memEnv); ok {
			addr = "nowhere"
		}
		_, err := b.tr.Dial(dialCtx(t), addr, a.ID())
		wantIs(t, err, ErrGated, blocked)
		if errors.Is(err, ErrNoListener) || errors.Is(err, errConnRefused) {
			t.Errorf("dial touched the network: %v", err)
		}
		if gotID != a.ID() || gotAddr != addr {
			t.Errorf("gater got %s %q", gotID.ShortString(), gotAddr)
		}
		if s := b.stats(); s.OutboundRefused != 1 {
			t.Errorf("stats %+v", s)
		}
		t.Logf("dialer: %v", err)
	})
}

func TestGaterAccept(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		blocked := errors.New("address banned")
		var gotRemote net.Addr
		a := newNode(t, e, func(c *Config) {
			c.Gater = GaterFuncs{Accept: func(remote net.Addr) error {
				gotRemote = remote
				return blocked
			}}
		})
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		if err == nil {
			t.Fatal("dial succeeded")
		}
		if errors.Is(err, ErrRemoteRefused) || errors.Is(err, ErrHandshakeTimeout) {
			t.Errorf("dial error %v: want a closed connection", err)
		}
		ev := a.waitEvent(t, "refused")
		wantIs(t, ev.err, ErrGated, blocked)
		if gotRemote == nil || gotRemote.String() != ev.remote.String() {
			t.Errorf("gater saw %v, event %v", gotRemote, ev.remote)
		}
		if s := a.stats(); s.InboundRefused != 1 {
			t.Errorf("stats %+v", s)
		}
		t.Logf("dialer: %v", err)
		t.Logf("listener: %v", ev.err)
	})
}

func TestGaterSecuredInbound(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes: cut at a rune boundary
	cases := []struct {
		name       string
		err        error
		wantCode   RefusalCode
		wantReason string
	}{
		{"limit", Refuse(RefusalLimit, errors.New("too many links")), RefusalLimit, "too many links"},
		{"plain error", errors.New("not welcome"), RefusalGated, "not welcome"},
		{"wrapped refusal", wrapErr("admission", Refuse(RefusalDuplicate, errors.New("have one"))), RefusalDuplicate, "admission: have one"},
		{"zero code", Refuse(0, errors.New("zero")), RefusalGated, "zero"},
		{"long reason", Refuse(RefusalOther, errors.New(long)), RefusalOther, long[:254]},
	}
	forEachEnv(t, func(t *testing.T, e env) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				b := newNode(t, e, nil)
				var gotDir Direction
				var gotID peer.ID
				a := newNode(t, e, func(c *Config) {
					c.Gater = GaterFuncs{Secured: func(dir Direction, id peer.ID, remote net.Addr) error {
						gotDir, gotID = dir, id
						return tc.err
					}}
				})
				l := a.listen(t, e)
				_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
				wantIs(t, err, ErrRemoteRefused)
				var rr *RemoteRefusedError
				if !errors.As(err, &rr) {
					t.Fatalf("error %T is not a *RemoteRefusedError", err)
				}
				if rr.Code != tc.wantCode || rr.Reason != tc.wantReason {
					t.Errorf("got code %v reason %q, want %v %q", rr.Code, rr.Reason, tc.wantCode, tc.wantReason)
				}
				ev := a.waitEvent(t, "refused")
				wantIs(t, ev.err, ErrGated, tc.err)
				if gotDir != Inbound || gotID != b.ID() {
					t.Errorf("gater got %v %s", gotDir, gotID.ShortString())
				}
				if s := b.stats(); s.OutboundRemoteRefused != 1 {
					t.Errorf("dialer stats %+v", s)
				}
				if s := a.stats(); s.InboundRefused != 1 || s.InboundOK != 0 {
					t.Errorf("listener stats %+v", s)
				}
			})
		}
	})
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func wrapErr(msg string, err error) error { return &wrapped{msg, err} }

func TestGaterSecuredOutbound(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		blocked := errors.New("not that one")
		a := newNode(t, e, nil)
		var gotDir Direction
		var gotID peer.ID
		b := newNode(t, e, func(c *Config) {
			c.Gater = GaterFuncs{Secured: func(dir Direction, id peer.ID, remote net.Addr) error {
				gotDir, gotID = dir, id
				return blocked
			}}
		})
		l := a.listen(t, e)
		accepted := acceptAsync(t, l)
		_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		wantIs(t, err, ErrGated, blocked)
		if gotDir != Outbound || gotID != a.ID() {
			t.Errorf("gater got %v %s", gotDir, gotID.ShortString())
		}
		// The listener may have admitted the link before the dialer
		// dropped it (TCP: its verdict is buffered); then the accepted
		// link is dead.
		for done := false; !done; {
			select {
			case c := <-accepted:
				if c != nil {
					waitClosed(t, c)
					c.Close()
				}
				done = true
			case ev := <-a.events:
				if ev.kind == "start" || ev.kind == "spoke" || ev.kind == "ok" {
					continue
				}
				t.Logf("listener: %s %v", ev.kind, ev.err)
				done = true
			case <-time.After(waitLimit):
				t.Fatal("listener neither admitted nor failed the link")
			}
		}
		t.Logf("dialer: %v", err)
	})
}

func TestDialContext(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		t.Run("cancel", func(t *testing.T) {
			b := newNode(t, e, nil)
			addr, accepted := e.silentListener(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := b.tr.Dial(ctx, addr, b.ID())
				errc <- err
			}()
			select {
			case <-accepted:
			case <-time.After(waitLimit):
				t.Fatal("dial did not reach the listener")
			}
			cancel()
			select {
			case err := <-errc:
				wantIs(t, err, context.Canceled)
				t.Logf("dialer: %v", err)
			case <-time.After(waitLimit):
				t.Fatal("cancel did not abort the dial")
			}
		})
		t.Run("deadline", func(t *testing.T) {
			b := newNode(t, e, nil)
			addr, _ := e.silentListener(t)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := b.tr.Dial(ctx, addr, b.ID())
			wantIs(t, err, context.DeadlineExceeded)
			if s := b.stats(); s.OutboundFailed != 1 {
				t.Errorf("stats %+v", s)
			}
		})
		t.Run("already done", func(t *testing.T) {
			b := newNode(t, e, nil)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := b.tr.Dial(ctx, "127.0.0.1:1", b.ID())
			wantIs(t, err, context.Canceled)
		})
	})
}

func TestListenerCloseInFlight(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, nil) // default 10s handshake timeout
		l := a.listen(t, e)
		raws := make([]net.Conn, 3)
		for i := range raws {
			raws[i] = e.rawDial(t, l.Addr().String())
			a.waitEvent(t, "start")
		}
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- l.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close blocked")
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close took %v", d)
		}
		for _, c := range raws {
			waitClosed(t, c)
		}
		for range raws {
			ev := a.waitEvent(t, "failed")
			wantIs(t, ev.err, net.ErrClosed)
		}
		if s := a.stats(); s.InboundPending != 0 {
			t.Errorf("pending after Close: %+v", s)
		}
		_, err := l.Accept()
		wantIs(t, err, net.ErrClosed)
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		// The address is free again.
		if _, ok := e.(memEnv); ok {
			l2, err := a.tr.Listen(l.Addr().String())
			if err != nil {
				t.Fatalf("listen again: %v", err)
			}
			l2.Close()
		}
	})
}

// A link admitted but never Accepted is closed by Listener.Close, and
// the dialer notices.
func TestListenerCloseUnaccepted(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, nil)
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p := a.stats().InboundPending; p != 1 {
			t.Errorf("pending %d, want 1 (waiting for Accept)", p)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
		if p := a.stats().InboundPending; p != 0 {
			t.Errorf("pending %d after Close", p)
		}
	})
}

// Accept blocked in another goroutine returns when the listener closes.
func TestAcceptUnblockedByClose(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, nil)
		l := a.listen(t, e)
		errc := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			errc <- err
		}()
		l.Close()
		select {
		case err := <-errc:
			wantIs(t, err, net.ErrClosed)
		case <-time.After(waitLimit):
			t.Fatal("Accept not unblocked")
		}
	})
}

// Many dials at once, all accepted.
func TestConcurrentDials(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		const n = 16
		// All n dial from 127.0.0.1 at once: more than the per-address
		// defaults allow (8 pending handshakes, 8 links).
		a := newNode(t, e, func(c *Config) {
			c.MaxPendingPerIP, c.MaxPendingPerSubnet, c.MaxInboundPerIP = -1, -1, -1
		})
		l := a.listen(t, e)
		var wg sync.WaitGroup
		wg.Go(func() {
			for range n {
				c, err := l.Accept()
				if err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				c.Close()
			}
		})
		var dials sync.WaitGroup
		for range n {
			b := newNode(t, e, nil)
			dials.Go(func() {
				c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				c.Close()
			})
		}
		dials.Wait()
		wg.Wait()
		if s := a.stats(); s.InboundOK != n {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	id, _ := peer.GenerateIdentity()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no identity", Config{Network: "n"}, "transport: invalid config: Identity is nil"},
		{"empty network", Config{Identity: id}, "transport: invalid config: Network is empty"},
		{"space", Config{Identity: id, Network: "a b"}, `transport: invalid config: Network "a b" contains a space`},
		{"control", Config{Identity: id, Network: "a\nb"}, `transport: invalid config: Network "a\nb" contains byte 0x0a at offset 1, want printable ASCII`},
		{"non-ascii", Config{Identity: id, Network: "né"}, `transport: invalid config: Network "né" contains byte 0xc3 at offset 1, want printable ASCII`},
		{"too long", Config{Identity: id, Network: strings.Repeat("x", 65)}, "transport: invalid config: Network is 65 bytes, max 64"},
		{"negative timeout", Config{Identity: id, Network: "n", HandshakeTimeout: -1}, "transport: invalid config: HandshakeTimeout -1ns is negative"},
		{"negative pending", Config{Identity: id, Network: "n", MaxPendingHandshakes: -1}, "transport: invalid config: MaxPendingHandshakes -1 is negative"},
		{"negative first byte", Config{Identity: id, Network: "n", FirstByteTimeout: -1}, "transport: invalid config: FirstByteTimeout -1ns is negative"},
		{"invalid exempt", Config{Identity: id, Network: "n", LimitExempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}},
			`transport: invalid config: LimitExempt[1] "invalid Prefix" is not a valid prefix`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTCP(tc.cfg)
			wantIs(t, err, ErrInvalidConfig)
			if err.Error() != tc.want {
				t.Errorf("NewTCP: %q\nwant         %q", err, tc.want)
			}
			_, err = NewMemoryNetwork().NewTransport(tc.cfg)
			wantIs(t, err, ErrInvalidConfig)
		})
	}
	good := Config{Identity: id, Network: strings.Repeat("x", 64)}
	if _, err := NewTCP(good); err != nil {
		t.Errorf("64-byte network: %v", err)
	}
	cfg, _ := good.withDefaults()
	if cfg.HandshakeTimeout != DefaultHandshakeTimeout || cfg.MaxPendingHandshakes != DefaultMaxPendingHandshakes || cfg.Gater == nil ||
		cfg.FirstByteTimeout != DefaultFirstByteTimeout || cfg.MaxPendingPerIP != DefaultMaxPendingPerIP ||
		cfg.MaxPendingPerSubnet != DefaultMaxPendingPerSubnet || cfg.MaxInboundPerIP != DefaultMaxInboundPerIP {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if DefaultFirstByteTimeout >= DefaultHandshakeTimeout {
		t.Errorf("DefaultFirstByteTimeout %v not below DefaultHandshakeTimeout %v", DefaultFirstByteTimeout, DefaultHandshakeTimeout)
	}
	// Negative caps mean none and stay negative; exempt prefixes are
	// masked, IPv4-mapped ones made IPv4; the caller's slice is not
	// touched.
	exempt := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("::ffff:192.168.1.0/120")}
	cfg, err := Config{Identity: id, Network: "n", MaxPendingPerIP: -1, MaxPendingPerSubnet: -2, MaxInboundPerIP: -1,
		LimitExempt: exempt}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPendingPerIP != -1 || cfg.MaxPendingPerSubnet != -2 || cfg.MaxInboundPerIP != -1 {
		t.Errorf("negative caps changed: %+v", cfg)
	}
	if got := fmt.Sprint(cfg.LimitExempt); got != "[10.0.0.0/8 192.168.1.0/24]" {
		t.Errorf("LimitExempt normalized to %s", got)
	}
	if exempt[0].String() != "10.1.2.3/8" {
		t.Errorf("caller's LimitExempt changed: %v", exempt)
	}
}

func TestMemoryAddresses(t *testing.T) {
	e := memEnv{n: NewMemoryNetwork()}
	a := newNode(t, e, nil)
	l1 := a.listen(t, e)
	l2 := a.listen(t, e)
	if l1.Addr().String() == l2.Addr().String() || !strings.HasPrefix(l1.Addr().String(), "mem-") {
		t.Errorf("generated addresses %s, %s", l1.Addr(), l2.Addr())
	}
	if l1.Addr().Network() != "memory" {
		t.Errorf("network %q", l1.Addr().Network())
	}
	named, err := a.tr.Listen("validator-0")
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	_, err = a.tr.Listen("validator-0")
	wantIs(t, err, syscall.EADDRINUSE)
	_, err = a.tr.Listen(l1.Addr().String())
	wantIs(t, err, syscall.EADDRINUSE)

	_, err = a.tr.Dial(dialCtx(t), "validator-1", a.ID())
	wantIs(t, err, ErrNoListener, errConnRefused)
	t.Logf("dial unknown: %v", err)
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Inbound.String(), "inbound"},
		{Outbound.String(), "outbound"},
		{Direction(7).String(), "direction(7)"},
		{RefusalGated.String(), "gated"},
		{RefusalLimit.String(), "resource limit"},
		{RefusalDuplicate.String(), "duplicate link"},
		{RefusalClosing.String(), "closing"},
		{RefusalAddrLimit.String(), "address limit"},
		{RefusalOther.String(), "other"},
		{RefusalCode(9).String(), "refusal(9)"},
		{Refuse(RefusalLimit, errors.New("full")).Error(), "full"},
		{Refuse(RefusalLimit, nil).Error(), "refused: resource limit"},
		{(&RemoteRefusedError{Code: RefusalDuplicate, Reason: "have one"}).Error(), "transport: remote refused the link (duplicate link): have one"},
		{(&RemoteRefusedError{Code: RefusalClosing}).Error(), "transport: remote refused the link (closing)"},
		{(&ListenerRefusedError{Addr: "127.0.0.1:4001", Code: 1}).Error(), "transport: listener 127.0.0.1:4001 busy: too many pending handshakes, try again later"},
		{(&ListenerRefusedError{Addr: "127.0.0.1:4001", Code: 2}).Error(), "transport: listener 127.0.0.1:4001 refused the connection: too many connections from our address"},
		{(&ListenerRefusedError{Addr: "[::1]:4001", Code: 9}).Error(), "transport: listener [::1]:4001 refused the connection before the handshake (code 9), try again later"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	cause := errors.New("cause")
	if !errors.Is(Refuse(RefusalOther, cause), cause) {
		t.Error("RefusalError does not unwrap")
	}
	if errors.Is(&RemoteRefusedError{}, ErrGated) {
		t.Error("RemoteRefusedError is ErrGated")
	}
	if errors.Is(&RemoteRefusedError{Code: RefusalLimit}, ErrAddrConnLimit) || !errors.Is(&RemoteRefusedError{Code: RefusalAddrLimit}, ErrAddrConnLimit) {
		t.Error("RemoteRefusedError is ErrAddrConnLimit for the wrong codes")
	}
	for code, want := range map[byte]error{1: ErrListenerBusy, 2: ErrAddrConnLimit, 9: ErrListenerBusy} {
		err := error(&ListenerRefusedError{Code: code})
		if !errors.Is(err, want) || errors.Is(err, ErrRemoteRefused) {
			t.Errorf("ListenerRefusedError code %d: not %v only", code, want)
		}
	}
	for _, s := range []error{ErrPeerIDMismatch, ErrNetworkMismatch, ErrGated, ErrRemoteRefused,
		ErrHandshakeTimeout, ErrInvalidConfig, ErrCertificateRejected, ErrProtocol, ErrNoListener, ErrInvalidCertificate,
		ErrListenerBusy, ErrAddrConnLimit} {
		if !strings.HasPrefix(s.Error(), "transport: ") {
			t.Errorf("sentinel %q lacks the prefix", s)
		}
	}
}

func TestTruncateReason(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("a", 255), strings.Repeat("a", 300),
		strings.Repeat("€", 100), "a" + strings.Repeat("€", 100)} {
		got := truncateReason(s)
		if len(got) > maxReason || !strings.HasPrefix(s, got) || !isValidUTF8(got) {
			t.Errorf("truncateReason(%d bytes) = %d bytes", len(s), len(got))
		}
		if len(s) <= maxReason && got != s {
			t.Errorf("short reason changed")
		}
		if len(s) > maxReason && len(got) < maxReason-3 {
			t.Errorf("cut too much: %d", len(got))
		}
	}
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func TestVerdict(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		for _, tc := range []struct {
			code   RefusalCode
			reason string
		}{{0, ""}, {RefusalLimit, "full"}, {RefusalOther, ""}, {RefusalGated, strings.Repeat("x", 255)}} {
			var buf bytes.Buffer
			if err := writeVerdict(&buf, tc.code, tc.reason); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("trailing link data")
			code, reason, err := readVerdict(&buf)
			if err != nil || code != tc.code || reason != tc.reason {
				t.Errorf("got %v %q %v, want %v %q", code, reason, err, tc.code, tc.reason)
			}
			if buf.String() != "trailing link data" {
				t.Errorf("readVerdict consumed link data: %q left", buf.String())
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			in   string
			want error
			text string
		}{
			{"empty", "", io.EOF, "EOF"},
			{"bad version", "\x02\x00\x00", ErrProtocol, "verdict version 2, want 1"},
			{"version zero", "\x00\x01\x00", ErrProtocol, "verdict version 0"},
			{"truncated header", "\x01\x02", ErrProtocol, "truncated verdict: 2 of 3 header bytes"},
			{"truncated reason", "\x01\x02\x05abc", ErrProtocol, "truncated verdict: 3 of 5 reason bytes"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := readVerdict(strings.NewReader(tc.in))
				wantIs(t, err, tc.want)
				if !strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q lacks %q", err, tc.text)
				}
			})
		}
	})
	t.Run("sanitized", func(t *testing.T) {
		_, reason, err := readVerdict(strings.NewReader("\x01\x01\x05a\x1b[\xffb"))
		if err != nil || reason != "a\uFFFD[\uFFFDb" {
			t.Errorf("got %q %v", reason, err)
		}
	})
	t.Run("accepted reason ignored", func(t *testing.T) {
		code, reason, err := readVerdict(strings.NewReader("\x01\x00\x02hi"))
		if err != nil || code != 0 || reason != "" {
			t.Errorf("got %v %q %v", code, reason, err)
		}
	})
}

func TestMemoryHello(t *testing.T) {
	id, _ := peer.GenerateIdentity()
	hello := appendHello(nil, "net", id.ID())
	network, got, err := readHello(bytes.NewReader(hello))
	if err != nil || network != "net" || got != id.ID() {
		t.Fatalf("round trip: %q %s %v", network, got, err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		text string
	}{
		{"bad magic", append([]byte("XLM\x01"), hello[4:]...), "starts with"},
		{"bad version", append([]byte("PLM\x02"), hello[4:]...), "starts with"},
		{"zero length", append([]byte("PLM\x01\x00"), make([]byte, 32)...), "network length 0"},
		{"too long", []byte("PLM\x01\x41"), "network length 65"},
		{"truncated", hello[:len(hello)-1], "truncated memory hello"},
		{"space", appendHello(nil, "a b", id.ID()), "contains a space"},
		{"zero id", appendHello(nil, "net", peer.ID{}), "all-zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readHello(bytes.NewReader(tc.in))
			wantIs(t, err, ErrProtocol)
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks %q", err, tc.text)
			}
		})
	}
	_, _, err = readHello(bytes.NewReader(nil))
	wantIs(t, err, io.EOF)
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogging(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		var buf syncBuffer
		a := newNode(t, e, func(c *Config) {
			c.Logger = zerolog.New(&buf).Level(zerolog.DebugLevel)
			c.Gater = GaterFuncs{Secured: func(Direction, peer.ID, net.Addr) error { return errors.New("no") }}
		})
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		_, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
		wantIs(t, err, ErrRemoteRefused)
		a.waitEvent(t, "refused")
		l.Close()
		out := buf.String()
		for _, want := range []string{
			`"level":"info"`, `"message":"listening"`,
			`"level":"debug"`, `"direction":"inbound"`, `"message":"inbound link refused"`,
			`"error":"transport: gated: link from ` + b.ID().ShortString(),
			`"message":"listener closed"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %s:\n%s", want, out)
			}
		}
	})
}
