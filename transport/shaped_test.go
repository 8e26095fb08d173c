package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// linkPair dials from one new transport to another (both made by newT
// with cfg) and returns both ends, closing them at cleanup.
func linkPair(t *testing.T, cfg transport.Config, newT func(transport.Config) (transport.Transport, error), listenAddr string) (dialed, accepted transport.Conn, dialTook time.Duration) {
	t.Helper()
	mk := func() (peer.ID, transport.Transport) {
		id, err := peer.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Identity, c.Network = id, "rtt-test"
		tr, err := newT(c)
		if err != nil {
			t.Fatal(err)
		}
		return id.ID(), tr
	}
	lid, lt := mk()
	_, dt := mk()
	l, err := lt.Listen(listenAddr)
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan transport.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	dc, err := dt.Dial(ctx, l.Addr().String(), lid)
	dialTook = time.Since(start)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ac := <-acc
	l.Close()
	if ac == nil {
		dc.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		dc.Close()
		ac.Close()
	})
	return dc, ac, dialTook
}

// Both ends of a link shaped to 50 ms each way measure a 100 ms round
// trip. Over the memory transport, in virtual time, exactly.
func TestHandshakeRTTMemoryShaped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const oneWay = 50 * time.Millisecond
		n := transport.NewMemoryNetwork()
		cfg := transport.Config{RawConnWrapper: faultnet.ShapeRaw(faultnet.Link{Latency: oneWay})}
		newT := func(c transport.Config) (transport.Transport, error) { return n.NewTransport(c) }
		dc, ac, took := linkPair(t, cfg, newT, "")
		if dc.HandshakeRTT() != 2*oneWay || ac.HandshakeRTT() != 2*oneWay {
			t.Errorf("HandshakeRTT: dialer %v, listener %v; want %v", dc.HandshakeRTT(), ac.HandshakeRTT(), 2*oneWay)
		}
		// hello, hello, acknowledgement, verdict: two round trips.
		if took != 4*oneWay {
			t.Errorf("dial took %v, want %v", took, 4*oneWay)
		}
	})
}

// The same over TCP and TLS on the real clock: the dialer's probe is the
// ClientHello's round trip (the connect ran under the wrapper), the
// listener's is its flight's; crypto makes them a little longer.
func TestHandshakeRTTTCPShaped(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	cfg := transport.Config{RawConnWrapper: faultnet.ShapeRaw(faultnet.Link{Latency: oneWay})}
	newT := func(c transport.Config) (transport.Transport, error) { return transport.NewTCP(c) }
	dc, ac, took := linkPair(t, cfg, newT, "127.0.0.1:0")
	for _, c := range []transport.Conn{dc, ac} {
		if rtt := c.HandshakeRTT(); rtt < 2*oneWay*8/10 || rtt > 2*oneWay*12/10 {
			t.Errorf("%v HandshakeRTT %v, want %v ± 20%%", c.Direction(), rtt, 2*oneWay)
		}
	}
	t.Logf("TCP+TLS, 50 ms each way: dialer %v, listener %v; dial took %v", dc.HandshakeRTT(), ac.HandshakeRTT(), took)
	echoOver(t, dc, ac)
}

// Unshaped, every link still measures something, and TCP's dialer takes
// its connect.
func TestHandshakeRTTUnshaped(t *testing.T) {
	for _, tc := range []struct {
		name string
		newT func(transport.Config) (transport.Transport, error)
		addr string
	}{
		{"tcp", func(c transport.Config) (transport.Transport, error) { return transport.NewTCP(c) }, "127.0.0.1:0"},
		{"memory", func() func(transport.Config) (transport.Transport, error) {
			n := transport.NewMemoryNetwork()
			return func(c transport.Config) (transport.Transport, error) { return n.NewTransport(c) }
		}(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, ac, took := linkPair(t, transport.Config{}, tc.newT, tc.addr)
			for _, c := range []transport.Conn{dc, ac} {
				if rtt := c.HandshakeRTT(); rtt <= 0 || rtt > took {
					t.Errorf("%v HandshakeRTT %v (dial took %v)", c.Direction(), rtt, took)
				}
			}
			t.Logf("dialer %v, listener %v, dial %v", dc.HandshakeRTT(), ac.HandshakeRTT(), took)
		})
	}
}

// recorder is a RawConnWrapper that keeps the first bytes each raw conn
// writes.
type recorder struct {
	mu    sync.Mutex
	first [][]byte
}

type recordingConn struct {
	net.Conn
	r   *recorder
	idx int
}

func (r *recorder) wrap(c net.Conn) net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.first = append(r.first, nil)
	return &recordingConn{Conn: c, r: r, idx: len(r.first) - 1}
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	if len(c.r.first[c.idx]) < 8 {
		c.r.first[c.idx] = append(c.r.first[c.idx], p...)
	}
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// RawConnWrapper wraps the dialed and the accepted raw conn, under the
// security handshake: what it sees is TLS records, or the memory hello.
func TestRawConnWrapper(t *testing.T) {
	for _, tc := range []struct {
		name   string
		newT   func(*transport.MemoryNetwork) func(transport.Config) (transport.Transport, error)
		addr   string
		prefix []byte
	}{
		{"tcp", func(*transport.MemoryNetwork) func(transport.Config) (transport.Transport, error) {
			return func(c transport.Config) (transport.Transport, error) { return transport.NewTCP(c) }
		}, "127.0.0.1:0", []byte{0x16, 0x03}}, // TLS handshake record
		{"memory", func(n *transport.MemoryNetwork) func(transport.Config) (transport.Transport, error) {
			return func(c transport.Config) (transport.Transport, error) { return n.NewTransport(c) }
		}, "", []byte("PLM\x01")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			dc, ac, _ := linkPair(t, transport.Config{RawConnWrapper: r.wrap}, tc.newT(transport.NewMemoryNetwork()), tc.addr)
			echoOver(t, dc, ac)
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.first) != 2 {
				t.Fatalf("wrapper called %d times, want 2 (dialed, accepted)", len(r.first))
			}
			for i, b := range r.first {
				if !bytes.HasPrefix(b, tc.prefix) {
					t.Errorf("raw conn %d first wrote %x, want the handshake %x", i, b, tc.prefix)
				}
			}
		})
	}
}

func echoOver(t *testing.T, a, b net.Conn) {
	t.Helper()
	go a.Write([]byte("ping"))
	buf := make([]byte, 4)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

// A refusal is written just before the listener closes the link; over a
// shaped link it must still reach the dialer, as over a real network.
func TestShapedRefusal(t *testing.T) {
	refuse := transport.GaterFuncs{Secured: func(transport.Direction, peer.ID, net.Addr) error {
		return transport.Refuse(transport.RefusalDuplicate, errors.New("have one"))
	}}
	shape := faultnet.ShapeRaw(faultnet.Link{Latency: 20 * time.Millisecond, Bandwidth: 1e6})
	run := func(t *testing.T, newT func(transport.Config) (transport.Transport, error), addr string) {
		mk := func(g transport.Gater) (peer.ID, transport.Transport) {
			id, _ := peer.GenerateIdentity()
			tr, err := newT(transport.Config{Identity: id, Network: "refusal", Gater: g, RawConnWrapper: shape})
			if err != nil {
				t.Fatal(err)
			}
			return id.ID(), tr
		}
		lid, lt := mk(refuse)
		_, dt := mk(nil)
		l, err := lt.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go l.Accept()
		_, err = dt.Dial(context.Background(), l.Addr().String(), lid)
		var rre *transport.RemoteRefusedError
		if !errors.As(err, &rre) || rre.Code != transport.RefusalDuplicate || rre.Reason != "have one" {
			t.Fatalf("dial = %v, want the listener's refusal", err)
		}
	}
	t.Run("memory", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := transport.NewMemoryNetwork()
			run(t, func(c transport.Config) (transport.Transport, error) { return n.NewTransport(c) }, "")
		})
	})
	t.Run("tcp", func(t *testing.T) {
		run(t, func(c transport.Config) (transport.Transport, error) { return transport.NewTCP(c) }, "127.0.0.1:0")
	})
}
