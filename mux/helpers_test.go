package mux

import (
	"crypto/ed25519"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/peer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testPeer(t testing.TB, seed byte) peer.ID {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	id, err := peer.IDFromPublicKey(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testConfig is DefaultConfig without keepalive (no timers in tests),
// and with a stream close timeout longer than any test run: yamux starts
// a close timer (time.AfterFunc) for every half-closed stream and never
// stops it when its session ends; firing after its test, outside any
// synctest bubble, it would take a timer from yamux's global pool that a
// bubble may have left there (fatal), or leave one of its own for a
// bubble to take. Tests of the close timeout set their own.
func testConfig() Config {
	c := DefaultConfig()
	c.EnableKeepAlive = false
	c.StreamCloseTimeout = time.Hour
	return c
}

// links are the two kinds of link the tests run over.
var links = []struct {
	name string
	pair func(t testing.TB) (client, server net.Conn)
}{
	{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
	{"tcp", tcpPair},
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return c, r.c
}

type pair struct {
	client, server *Session
}

// newPair starts a client session (dialer, peer 1) and a server session
// (peer 2) over the two conns; both are closed at the end of the test.
func newPair(t testing.TB, cc, sc net.Conn, ccfg, scfg Config, croute, sroute func(string) Handler) pair {
	t.Helper()
	a, b := testPeer(t, 1), testPeer(t, 2)
	client, err := NewSession(cc, a, b, true, ccfg, croute)
	if err != nil {
		t.Fatal(err)
	}
	server, err := NewSession(sc, b, a, false, scfg, sroute)
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return pair{client, server}
}

// routeOf serves the given protocols.
func routeOf(hs map[string]Handler) func(string) Handler {
	return func(p string) Handler { return hs[p] }
}

// recordConn records the size of every Write that reaches the link.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *recordConn) snapshot() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// waitFor waits for cond, checking it each time tick fires, up to d.
// It is for conditions with no event to wait on (counters of the other
// side); it never sleeps a guessed time.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
