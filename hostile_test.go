package peerlink_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// hostileFrame encodes a yamux frame header.
func hostileFrame(typ byte, flags uint16, id, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// A peer that authenticates properly (real TCP, real TLS) and then
// writes yamux frames by hand: 400 streams of 128 KiB against a per-peer
// limit of 64 and a memory budget of 16 MiB, then data for the refused
// streams. The node stays up, its heap grows by less than the budget, and
// an honest peer is served throughout.
func TestHostilePeerStreamFlood(t *testing.T) {
	const (
		budget  = 16 << 20
		streams = 400
		each    = 128 << 10
	)
	node := newManager(t, func(c *peerlink.Config) {
		c.MaxStreamsPerPeer, c.PeerMemoryBudget = 64, budget
	})
	withEcho(node, t)
	honest := newManager(t)
	connect(t, honest, node)
	roundTrip(t, honest, node.ID(), []byte("before"))

	before := heapAfterGC()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewTCP(transport.Config{Identity: id, Network: "peerlink-test"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tr.Dial(ctxT(t), node.Addrs()[0], node.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pong := make(chan struct{}, 1)
	go func() { // the node's answers
		h := make([]byte, 12)
		for {
			if _, err := io.ReadFull(conn, h); err != nil {
				return
			}
			if h[1] == 0 {
				if _, err := io.CopyN(io.Discard, conn, int64(binary.BigEndian.Uint32(h[8:12]))); err != nil {
					return
				}
			}
			if h[1] == 2 && binary.BigEndian.Uint16(h[2:4])&2 != 0 {
				pong <- struct{}{}
			}
		}
	}()

	hdr := append([]byte{1, byte(mux.PriorityNormal), byte(len(echoProto))}, echoProto...)
	body := append(hdr, make([]byte, each)...)
	for i := range streams {
		sid := uint32(2*i + 1)
		frames := hostileFrame(1, 1, sid, 0) // SYN
		for b := body; len(b) > 0; {
			k := min(len(b), 16<<10)
			frames = append(append(frames, hostileFrame(0, 0, sid, uint32(k))...), b[:k]...)
			b = b[k:]
		}
		if _, err := conn.Write(frames); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if i%50 == 0 {
			roundTrip(t, honest, node.ID(), []byte("during"))
		}
	}
	roundTrip(t, honest, node.ID(), []byte("after"))
	// Everything sent is in once a ping sent after it is answered.
	if _, err := conn.Write(hostileFrame(2, 1, 0, 42)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pong:
	case <-ctxT(t).Done():
		t.Fatal("no answer to the ping")
	}
	growth := heapAfterGC() - before
	t.Logf("heap growth %.1f MiB after %d streams of %d KiB from one peer (budget %d MiB)", float64(growth)/(1<<20), streams, each>>10, budget>>20)
	if growth > budget+4<<20 {
		t.Errorf("heap grew by %d bytes, want at most the budget (%d) + 4 MiB", growth, budget)
	}
	if node.ConnectionCount() != 2 {
		t.Errorf("node has %d links, want the honest and the hostile one", node.ConnectionCount())
	}
}

func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Hundreds of silent sockets from the honest peer's own address, each
// re-opened as soon as the node drops it: the honest peer still connects
// on its first try, well within a second.
func TestHonestPeerConnectsDuringSilentFlood(t *testing.T) {
	node := newManager(t)
	withEcho(node, t)
	addr := node.Addrs()[0]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var dials atomic.Int64
	flooding := make(chan struct{}) // closed at the 1,000th attacker socket
	for range 300 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				if dials.Add(1) == 1000 {
					close(flooding)
				}
				closed := make(chan struct{})
				go func() {
					_, _ = c.Read(make([]byte, 1)) // until the node drops it
					close(closed)
				}()
				select {
				case <-closed:
				case <-stop:
				}
				c.Close()
				<-closed
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Let the flood fill the node's pending table first.
	select {
	case <-flooding:
	case <-ctxT(t).Done():
		t.Fatal("the flood did not get going")
	}
	for i := range 5 {
		honest := newManager(t)
		start := time.Now()
		err := honest.Connect(ctxT(t), node.AddrInfo())
		took := time.Since(start)
		t.Logf("honest peer %d connected in %v during the flood (%d attacker sockets so far)", i, took, dials.Load())
		if err != nil {
			t.Fatalf("honest peer %d: first try failed: %v", i, err)
		}
		if took > time.Second {
			t.Errorf("honest peer %d took %v to connect", i, took)
		}
		roundTrip(t, honest, node.ID(), []byte("hello"))
		honest.Close()
	}
}

// A listener too busy to take a handshake says so, and the dialer's
// circuit breaker does not count it against the peer: the peer is up.
func TestBusyListenerIsNotAPeerFailure(t *testing.T) {
	node := newManager(t, func(c *peerlink.Config) {
		c.MaxPendingHandshakes = 1
		c.FirstByteTimeout, c.HandshakeTimeout = time.Minute, time.Minute
	})
	// One socket that spoke, then stalls, young: neither silent nor slow,
	// so a newcomer is refused rather than evicting it.
	slow, err := net.Dial("tcp", node.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	dialer := newManager(t)
	threshold := peerlink.DefaultConfig().Breaker.FailureThreshold
	for i := range int(threshold) + 2 {
		err := dialer.Connect(ctxT(t), node.AddrInfo())
		if !errors.Is(err, transport.ErrListenerBusy) {
			t.Fatalf("dial %d: %v, want ErrListenerBusy", i, err)
		}
		if i == 0 {
			t.Logf("dialer sees: %v", err)
		}
	}
	if st := dialer.BreakerState(node.ID()); st != breaker.StateClosed {
		t.Errorf("breaker %v after %d busy refusals, want closed", st, threshold+2)
	}
}

// At most MaxInboundPerIP links from one address; the next dialer is told
// why, and its breaker does not count it.
func TestInboundLimitPerIP(t *testing.T) {
	node := newManager(t, func(c *peerlink.Config) { c.MaxInboundPerIP = 2 })
	withEcho(node, t)
	for range 2 {
		connect(t, newManager(t), node)
	}
	third := newManager(t)
	err := third.Connect(ctxT(t), node.AddrInfo())
	if !errors.Is(err, transport.ErrAddrConnLimit) {
		t.Fatalf("third link from 127.0.0.1: %v, want ErrAddrConnLimit", err)
	}
	t.Logf("third dialer sees: %v", err)
	if st := third.BreakerState(node.ID()); st != breaker.StateClosed {
		t.Errorf("breaker %v, want closed", st)
	}
	exempt := newManager(t)
	node2 := newManager(t, func(c *peerlink.Config) {
		c.MaxInboundPerIP = 1
		c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	connect(t, newManager(t), node2)
	connect(t, exempt, node2) // exempt: past the limit
}

// One peer holding every stream it may, header-less, takes none of the
// node's own: a critical stream the node opens to another peer goes
// through; once the flooder's headers arrive it gets its share of the
// node's inbound streams and no more.
func TestPeerCannotTakeTheNodesStreams(t *testing.T) {
	node := newManager(t, func(c *peerlink.Config) {
		c.MaxStreams = 16 // 8 inbound (2 per peer), 8 outbound
		c.FailFastStreams = true
	})
	withEcho(node, t)
	flooder, other := newManager(t), newManager(t)
	withEcho(other, t)
	connect(t, flooder, node)
	connect(t, node, other)
	var held []*mux.Stream
	for range 32 {
		s, err := flooder.OpenStream(ctxT(t), node.ID(), echoProto, mux.PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s) // opened, header not sent
	}
	s, err := node.OpenStream(ctxT(t), other.ID(), echoProto, mux.PriorityCritical)
	if err != nil {
		t.Fatalf("the node's critical stream while a peer floods it: %v", err)
	}
	if _, err := s.Write([]byte("vote")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, err := io.ReadAll(s); err != nil || string(got) != "vote" {
		t.Fatalf("echo %q, %v", got, err)
	}
	served, refused := 0, 0
	for _, s := range held {
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err := io.ReadFull(s, make([]byte, 1))
		switch {
		case err == nil:
			served++
		case errors.Is(err, mux.ErrStreamLimit):
			refused++
		default:
			t.Fatalf("flooder's stream: %v", err)
		}
	}
	t.Logf("flooder: %d streams served, %d refused", served, refused)
	if served != 2 || refused != len(held)-2 {
		t.Errorf("flooder got %d streams served, want its share of 2", served)
	}
}
