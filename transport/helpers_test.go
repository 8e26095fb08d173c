package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/peer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait on an event in these tests; reaching it is
// a failure, never the expected path.
const waitLimit = 5 * time.Second

// env is one transport kind under test.
type env interface {
	name() string
	newTransport(cfg Config) (Transport, error)
	listenAddr() string
	// rawDial opens a connection to addr that runs no handshake.
	rawDial(t *testing.T, addr string) net.Conn
	// silentListener listens without ever answering; each accepted raw
	// connection is sent on the channel.
	silentListener(t *testing.T) (addr string, accepted <-chan net.Conn)
}

type tcpEnv struct{}

func (tcpEnv) name() string                               { return "tcp" }
func (tcpEnv) newTransport(cfg Config) (Transport, error) { return NewTCP(cfg) }
func (tcpEnv) listenAddr() string                         { return "127.0.0.1:0" }

func (tcpEnv) rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (tcpEnv) silentListener(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().String(), serveSilently(t, l)
}

type memEnv struct{ n *MemoryNetwork }

func (memEnv) name() string                                 { return "memory" }
func (e memEnv) newTransport(cfg Config) (Transport, error) { return e.n.NewTransport(cfg) }
func (memEnv) listenAddr() string                           { return "" }

func (e memEnv) rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := e.n.dialRaw(ctx, addr)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e memEnv) silentListener(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	l, err := e.n.listenRaw("")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().String(), serveSilently(t, l)
}

// serveSilently accepts on l until the test ends, holding every
// connection open without answering a byte; each connection is sent on
// the returned channel once its first byte has arrived.
func serveSilently(t *testing.T, l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 16)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			// Signal once the dialer's handshake has begun: its first
			// byte is here.
			_ = c.SetReadDeadline(time.Now().Add(waitLimit))
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				continue
			}
			select {
			case ch <- c:
			default:
			}
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ch
}

// forEachEnv runs f once per transport kind.
func forEachEnv(t *testing.T, f func(t *testing.T, e env)) {
	t.Run("tcp", func(t *testing.T) { f(t, tcpEnv{}) })
	t.Run("memory", func(t *testing.T) { f(t, memEnv{n: NewMemoryNetwork()}) })
}

// event is one inbound outcome reported by the upgrader's hook.
type event struct {
	kind   string
	remote net.Addr
	err    error
}

// node is a transport under test with its identity and inbound events.
type node struct {
	id     *peer.Identity
	tr     Transport
	up     *upgrader
	events chan event
}

const testNetwork = "peerlink-test"

func newNode(t *testing.T, e env, mutate func(*Config)) *node {
	t.Helper()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Identity: id, Network: testNetwork}
	if mutate != nil {
		mutate(&cfg)
	}
	tr, err := e.newTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{id: id, tr: tr, events: make(chan event, 1024)}
	switch tr := tr.(type) {
	case *TCP:
		n.up = tr.up
	case *Memory:
		n.up = tr.up
	}
	n.up.hook = func(kind string, remote net.Addr, err error) {
		select {
		case n.events <- event{kind, remote, err}:
		default:
			panic("test event buffer full")
		}
	}
	return n
}

func (n *node) ID() peer.ID { return n.id.ID() }

func (n *node) listen(t *testing.T, e env) Listener {
	t.Helper()
	l, err := n.tr.Listen(e.listenAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// waitEvent waits for the next inbound event of the given kind, skipping
// others.
func (n *node) waitEvent(t *testing.T, kind string) event {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case ev := <-n.events:
			if ev.kind == kind {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %q event within %v", kind, waitLimit)
		}
	}
}

func (n *node) stats() Stats { return n.up.stats.snapshot() }

func dialCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	tb.Cleanup(cancel)
	return ctx
}

// acceptAsync calls Accept once in a goroutine.
func acceptAsync(t *testing.T, l Listener) <-chan Conn {
	ch := make(chan Conn, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		select {
		case c := <-ch:
			if c != nil {
				c.Close()
			}
		default:
		}
	})
	return ch
}

// dialPair makes a link from a new node to a new node (both configured by
// mod), through a listener of the second: it returns the dialed and the
// accepted end, closed when the test ends.
func dialPair(t *testing.T, e env, mod func(*Config)) (dialed, accepted Conn) {
	t.Helper()
	a, b := newNode(t, e, mod), newNode(t, e, mod)
	l := a.listen(t, e)
	acc := acceptAsync(t, l)
	dc, err := b.tr.Dial(dialCtx(t), l.Addr().String(), a.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	ac := <-acc
	if ac == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ac.Close() })
	return dc, ac
}

// waitClosed reads c until the remote closes it; it fails if that takes
// waitLimit, or if data arrives that is not allowed.
func waitClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(waitLimit))
	_, err := io.Copy(io.Discard, c)
	if err != nil && isTimeout(err) {
		t.Fatalf("connection not closed by the remote within %v", waitLimit)
	}
	if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading until close: %v", err)
	}
	return time.Since(start)
}

// readUntilClosed reads c until the remote closes it and returns what
// it read; it fails if that takes waitLimit.
func readUntilClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	got, err := io.ReadAll(c)
	if err != nil && isTimeout(err) {
		t.Fatalf("connection not closed by the remote within %v (read %q)", waitLimit, got)
	}
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading until close: %v (read %q)", err, got)
	}
	return got
}

// assertOpen checks c has not been closed by the remote: a short read
// times out rather than returning EOF.
func assertOpen(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	if !isTimeout(err) {
		t.Fatalf("connection should still be open, read gave %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

func wantIs(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want one wrapping %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("error %q (%T) does not wrap %q", err, err, target)
		}
	}
}
