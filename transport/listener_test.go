package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/peer"
)

// A socket that sends nothing within FirstByteTimeout is closed then,
// long before HandshakeTimeout.
func TestFirstByteTimeout(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, func(c *Config) { c.FirstByteTimeout = 100 * time.Millisecond })
		l := a.listen(t, e)
		raw := e.rawDial(t, l.Addr().String())
		ev := a.waitEvent(t, "silent")
		wantIs(t, ev.err, ErrHandshakeTimeout)
		if !strings.Contains(ev.err.Error(), "FirstByteTimeout (100ms)") || ev.remote.String() != raw.LocalAddr().String() {
			t.Errorf("event %v from %v, want the silent socket %v's first-byte timeout", ev.err, ev.remote, raw.LocalAddr())
		}
		waitClosed(t, raw)
		t.Logf("listener: %v", ev.err)
		if s := a.stats(); s.InboundFirstByteTimeout != 1 || s.InboundFailed != 0 || s.InboundPending != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A full table evicts its oldest silent socket for a new one.
func TestEvictSilent(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, func(c *Config) { c.MaxPendingHandshakes = 2 })
		l := a.listen(t, e)
		addr := l.Addr().String()
		silent := make([]net.Conn, 3)
		for i := range silent[:2] {
			silent[i] = e.rawDial(t, addr)
			a.waitEvent(t, "start")
		}
		silent[2] = e.rawDial(t, addr)
		ev := a.waitEvent(t, "evicted")
		a.waitEvent(t, "start")
		if ev.remote.String() != silent[0].LocalAddr().String() {
			t.Errorf("evicted %v, want the oldest, %v", ev.remote, silent[0].LocalAddr())
		}
		for _, want := range []string{"silent", "global cap of 2"} {
			if !strings.Contains(ev.err.Error(), want) {
				t.Errorf("event %q lacks %q", ev.err, want)
			}
		}
		t.Logf("listener: %v", ev.err)
		waitClosed(t, silent[0])
		assertOpen(t, silent[1])
		assertOpen(t, silent[2])
		if s := a.stats(); s.InboundEvictedSilent != 1 || s.InboundEvictedSlow != 0 || s.InboundPending != 2 || s.InboundFailed != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A silent socket goes before an older one that has spoken; when all
// have spoken and none is slow, the new socket is refused.
func TestEvictSilentBeforeSlow(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		a := newNode(t, e, func(c *Config) {
			c.MaxPendingHandshakes = 2
			c.FirstByteTimeout = time.Minute // nothing is slow in this test
		})
		l := a.listen(t, e)
		addr := l.Addr().String()
		spoken := e.rawDial(t, addr)
		a.waitEvent(t, "start")
		if _, err := spoken.Write([]byte{0x16}); err != nil {
			t.Fatal(err)
		}
		a.waitEvent(t, "spoke")
		silent := e.rawDial(t, addr)
		a.waitEvent(t, "start")

		newer := e.rawDial(t, addr)
		ev := a.waitEvent(t, "evicted")
		if ev.remote.String() != silent.LocalAddr().String() {
			t.Errorf("evicted %v, want the silent %v", ev.remote, silent.LocalAddr())
		}
		waitClosed(t, silent)
		a.waitEvent(t, "start")
		if _, err := newer.Write([]byte{0x16}); err != nil {
			t.Fatal(err)
		}
		a.waitEvent(t, "spoke")

		refused := e.rawDial(t, addr)
		if got := readUntilClosed(t, refused); string(got) != "PLNK\x01" {
			t.Errorf("refused socket read %q, want the busy marker", got)
		}
		a.waitEvent(t, "overlimit")
		assertOpen(t, spoken)
		assertOpen(t, newer)
		if s := a.stats(); s.InboundEvictedSilent != 1 || s.InboundOverLimit != 1 || s.InboundPending != 2 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A handshake that has run longer than FirstByteTimeout is evicted for a
// new socket; a younger one is not. In a synctest bubble, over the
// memory transport, so that the clock can be moved on.
func TestEvictSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const firstByte = time.Second
		e := memEnv{n: NewMemoryNetwork()}
		a := newNode(t, e, func(c *Config) {
			c.MaxPendingHandshakes = 1
			c.FirstByteTimeout = firstByte
		})
		l := a.listen(t, e)
		addr := l.Addr().String()
		slow := e.rawDial(t, addr)
		a.waitEvent(t, "start")
		if _, err := slow.Write([]byte("P")); err != nil { // then stalls
			t.Fatal(err)
		}
		a.waitEvent(t, "spoke")

		young := e.rawDial(t, addr)
		if got := readUntilClosed(t, young); string(got) != "PLNK\x01" {
			t.Errorf("socket refused while the handshake is young read %q, want the busy marker", got)
		}
		a.waitEvent(t, "overlimit")

		time.Sleep(firstByte + time.Millisecond) // the bubble's clock: the handshake is slow now
		newer := e.rawDial(t, addr)
		ev := a.waitEvent(t, "evicted")
		if ev.remote.String() != slow.LocalAddr().String() || !strings.Contains(ev.err.Error(), "(slow, handshake not done after 1.001s)") {
			t.Errorf("evicted %v: %v; want the slow %v", ev.remote, ev.err, slow.LocalAddr())
		}
		t.Logf("listener: %v", ev.err)
		waitClosed(t, slow)
		a.waitEvent(t, "start")
		assertOpen(t, newer)
		if s := a.stats(); s.InboundEvictedSlow != 1 || s.InboundEvictedSilent != 0 || s.InboundOverLimit != 1 || s.InboundPending != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A dialer refused because the listener is busy is told so, every time:
// the marker reaches it before the close.
func TestListenerBusyRefusal(t *testing.T) {
	const dials = 50
	run := func(t *testing.T, e env, limit func(*Config)) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // refusers included
		a := newNode(t, e, func(c *Config) {
			// The one pending socket stays, young, for the whole test.
			c.HandshakeTimeout, c.FirstByteTimeout = time.Minute, time.Minute
			limit(c)
		})
		b := newNode(t, e, nil)
		l := a.listen(t, e)
		addr := l.Addr().String()
		slow := e.rawDial(t, addr)
		a.waitEvent(t, "start")
		if _, err := slow.Write([]byte{0x16}); err != nil {
			t.Fatal(err)
		}
		a.waitEvent(t, "spoke")

		for i := range dials {
			_, err := b.tr.Dial(dialCtx(t), addr, a.ID())
			if !errors.Is(err, ErrListenerBusy) {
				t.Fatalf("dial %d: %v, want ErrListenerBusy", i, err)
			}
			var lr *ListenerRefusedError
			if !errors.As(err, &lr) || lr.Addr != addr || lr.Code != 1 || errors.Is(err, ErrAddrConnLimit) {
				t.Fatalf("dial %d: %#v, want a busy refusal from %s", i, err, addr)
			}
			if i == 0 {
				want := "transport: listener " + addr + " busy: too many pending handshakes, try again later"
				if err.Error() != want {
					t.Errorf("dialer error %q, want %q", err, want)
				}
				t.Logf("dialer: %v", err)
				t.Logf("listener: %v", a.waitEvent(t, "overlimit").err)
			}
		}
		assertOpen(t, slow)
		if s := a.stats(); s.InboundOverLimit != dials || s.InboundPending != 1 {
			t.Errorf("listener stats %+v", s)
		}
		if s := b.stats(); s.OutboundRemoteRefused != dials || s.OutboundFailed != 0 {
			t.Errorf("dialer stats %+v", s)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		slow.Close()
	}
	forEachEnv(t, func(t *testing.T, e env) {
		t.Run("global cap", func(t *testing.T) { run(t, e, func(c *Config) { c.MaxPendingHandshakes = 1 }) })
		if _, ok := e.(tcpEnv); ok {
			t.Run("per-IP cap", func(t *testing.T) { run(t, e, func(c *Config) { c.MaxPendingPerIP = 1 }) })
			t.Run("per-subnet cap", func(t *testing.T) { run(t, e, func(c *Config) { c.MaxPendingPerSubnet = 1 }) })
		}
	})
}

// acceptAll accepts until the listener closes, sending each link on the
// returned channel.
func acceptAll(t *testing.T, l Listener) <-chan Conn {
	ch := make(chan Conn, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	return ch
}

func nextConn(t *testing.T, ch <-chan Conn) Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitLimit):
		t.Fatal("no link accepted")
	}
	return nil
}

// MaxInboundPerIP: a dial from an address with as many links as allowed
// is refused before the handshake; closing one link makes room;
// LimitExempt lifts the limit.
func TestMaxInboundPerIP(t *testing.T) {
	e := tcpEnv{}
	a := newNode(t, e, func(c *Config) { c.MaxInboundPerIP = 2 })
	b := newNode(t, e, nil)
	l := a.listen(t, e)
	addr := l.Addr().String()
	accepted := acceptAll(t, l)
	dial := func() (Conn, error) {
		c, err := b.tr.Dial(dialCtx(t), addr, a.ID())
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	host := netip.MustParsePrefix("127.0.0.1/32")

	var links []Conn
	for range 2 {
		if _, err := dial(); err != nil {
			t.Fatal(err)
		}
		links = append(links, nextConn(t, accepted))
	}
	_, err := dial()
	wantIs(t, err, ErrAddrConnLimit)
	var lr *ListenerRefusedError
	if !errors.As(err, &lr) || lr.Code != 2 || errors.Is(err, ErrListenerBusy) {
		t.Fatalf("third dial: %#v, want an address-limit refusal", err)
	}
	if want := "transport: listener " + addr + " refused the connection: too many connections from our address"; err.Error() != want {
		t.Errorf("dialer error %q, want %q", err, want)
	}
	ev := a.waitEvent(t, "addrlimit")
	wantIs(t, ev.err, ErrAddrConnLimit)
	t.Logf("dialer: %v", err)
	t.Logf("listener: %v", ev.err)
	if s := a.stats(); s.InboundAddrLimit != 1 || s.InboundOK != 2 {
		t.Errorf("stats %+v", s)
	}

	// Closing an accepted link (twice: it counts out once) makes room
	// for one.
	links[0].Close()
	links[0].Close()
	if n := a.up.links.count(host); n != 1 {
		t.Errorf("%d links counted after closing one of 2", n)
	}
	if _, err := dial(); err != nil {
		t.Fatalf("dial after closing a link: %v", err)
	}
	links = append(links, nextConn(t, accepted))
	_, err = dial()
	wantIs(t, err, ErrAddrConnLimit)
	for _, c := range links[1:] {
		c.Close()
	}
	if n := a.up.links.count(host); n != 0 {
		t.Errorf("%d links counted after closing all", n)
	}

	t.Run("exempt", func(t *testing.T) {
		a := newNode(t, e, func(c *Config) {
			c.MaxInboundPerIP = 2
			c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		l := a.listen(t, e)
		accepted := acceptAll(t, l)
		for i := range 4 {
			c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
			if err != nil {
				t.Fatalf("dial %d from an exempt address: %v", i, err)
			}
			defer c.Close()
			nextConn(t, accepted)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		a := newNode(t, e, func(c *Config) { c.MaxInboundPerIP = -1 })
		l := a.listen(t, e)
		accepted := acceptAll(t, l)
		for i := range DefaultMaxInboundPerIP + 1 {
			c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			defer c.Close()
			nextConn(t, accepted)
		}
	})
}

// Two handshakes from one address that both pass the accept-time check
// cannot both be admitted over MaxInboundPerIP: the second is refused by
// its verdict.
func TestMaxInboundPerIPDuringHandshake(t *testing.T) {
	e := tcpEnv{}
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	a := newNode(t, e, func(c *Config) {
		c.MaxInboundPerIP = 1
		c.Gater = GaterFuncs{Secured: func(Direction, peer.ID, net.Addr) error {
			arrived <- struct{}{}
			<-release
			return nil
		}}
	})
	l := a.listen(t, e)
	accepted := acceptAll(t, l)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		b := newNode(t, e, nil)
		wg.Go(func() {
			c, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			errs <- err
		})
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(waitLimit):
			close(release)
			t.Fatal("handshakes did not reach the gater")
		}
	}
	close(release)
	wg.Wait()
	var failed error
	for range 2 {
		if err := <-errs; err != nil {
			if failed != nil {
				t.Fatalf("both dials failed: %v; %v", failed, err)
			}
			failed = err
		}
	}
	wantIs(t, failed, ErrAddrConnLimit, ErrRemoteRefused)
	var rr *RemoteRefusedError
	if !errors.As(failed, &rr) || rr.Code != RefusalAddrLimit || rr.Reason != "too many links from 127.0.0.1 (limit 1)" {
		t.Errorf("refusal %#v", failed)
	}
	ev := a.waitEvent(t, "addrlimit")
	wantIs(t, ev.err, ErrAddrConnLimit)
	t.Logf("dialer: %v", failed)
	t.Logf("listener: %v", ev.err)
	nextConn(t, accepted)
	if s := a.stats(); s.InboundAddrLimit != 1 || s.InboundOK != 1 {
		t.Errorf("stats %+v", s)
	}
}

// The first byte, read by the listener, is replayed to the handshake;
// the established link then reads its socket directly.
func TestAcceptedConnUnwrapped(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		dc, ac := dialPair(t, e, nil)
		switch ac := ac.(type) {
		case *tlsConn:
			if _, ok := ac.batch.Conn.(*net.TCPConn); !ok {
				t.Errorf("accepted TLS link over %T, want *net.TCPConn", ac.batch.Conn)
			}
		case *plainConn:
			if _, ok := ac.Conn.(*memConn); !ok {
				t.Errorf("accepted memory link over %T, want *memConn", ac.Conn)
			}
		default:
			t.Fatalf("accepted %T", ac)
		}
		echo(t, dc, ac, "ping")
		echo(t, ac, dc, strings.Repeat("pong", 10000))
	})
}

// writeSignal closes sent once its first Write has returned.
type writeSignal struct {
	net.Conn
	sent chan struct{}
	once sync.Once
}

func (c *writeSignal) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.once.Do(func() { close(c.sent) })
	return n, err
}

// The marker reaches the dialer, followed by a clean close, never a
// reset, even when the listener refuses its socket with the ClientHello
// already unread in its receive queue (as under a flood, when the
// socket waited in the backlog). Closing such a socket at once would
// send a reset: on Linux loopback the dialer still reads the marker
// ahead of it, but over a real network a reset overtakes a marker lost
// in flight (and some stacks discard unread data on a reset), so the
// listener shuts its side and drains the socket first.
func TestBusyMarkerWithClientHelloUnread(t *testing.T) {
	e := tcpEnv{}
	var sent atomic.Pointer[chan struct{}]
	a := newNode(t, e, func(c *Config) {
		c.MaxPendingHandshakes = 1
		c.HandshakeTimeout, c.FirstByteTimeout = time.Minute, time.Minute
		// Hold each refused socket in the accept loop until the
		// dialer's first bytes are in its receive queue.
		c.Gater = GaterFuncs{Accept: func(net.Addr) error {
			if ch := sent.Load(); ch != nil {
				select {
				case <-*ch:
				case <-time.After(waitLimit):
				}
			}
			return nil
		}}
	})
	b := newNode(t, e, func(c *Config) {
		c.RawConnWrapper = func(c net.Conn) net.Conn { return &writeSignal{Conn: c, sent: *sent.Load()} }
	})
	l := a.listen(t, e)
	addr := l.Addr().String()
	slow := e.rawDial(t, addr)
	a.waitEvent(t, "start")
	if _, err := slow.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	a.waitEvent(t, "spoke")

	t.Run("raw", func(t *testing.T) {
		for i := range 20 {
			ch := make(chan struct{})
			sent.Store(&ch)
			c := e.rawDial(t, addr)
			if _, err := c.Write(bytes.Repeat([]byte{0x16}, 512)); err != nil {
				t.Fatal(err)
			}
			close(ch)
			_ = c.SetReadDeadline(time.Now().Add(waitLimit))
			got, err := io.ReadAll(c)
			if string(got) != "PLNK\x01" || err != nil {
				t.Fatalf("try %d: read %q, then %v; want the marker, then a clean EOF", i, got, err)
			}
			c.Close()
		}
	})
	t.Run("tls", func(t *testing.T) {
		for i := range 50 {
			ch := make(chan struct{})
			sent.Store(&ch)
			_, err := b.tr.Dial(dialCtx(t), addr, a.ID())
			if !errors.Is(err, ErrListenerBusy) {
				t.Fatalf("dial %d: %v, want ErrListenerBusy", i, err)
			}
		}
	})
}
