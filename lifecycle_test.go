package peerlink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

const blockProto = "/test/block/1"

// blocker is a handler that holds its stream until released, ignoring
// its Context: the worst a busy handler can do.
type blocker struct {
	entered chan peer.ID
	release chan struct{}
	once    sync.Once
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan peer.ID, 64), release: make(chan struct{})}
}

func (b *blocker) handle(s *mux.Stream) {
	b.entered <- s.RemotePeer()
	<-b.release
}

func (b *blocker) free() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) waitEntered(t testing.TB) peer.ID {
	t.Helper()
	select {
	case id := <-b.entered:
		return id
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the handler to start")
		return peer.ID{}
	}
}

// openBusy opens a stream of blockProto from→to and waits until its
// handler runs.
func openBusy(t testing.TB, from *peerlink.ConnectionManager, to peer.ID, b *blocker) *mux.Stream {
	t.Helper()
	s, err := from.OpenStream(ctxT(t), to, blockProto, mux.PriorityNormal)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	b.waitEntered(t)
	return s
}

// busyPair connects a to b and leaves one of a's streams with b's
// blocker handler busy on it.
func busyPair(t testing.TB) (a, b *peerlink.ConnectionManager, bl *blocker) {
	t.Helper()
	a, b, bl = newManager(t), newManager(t), newBlocker()
	t.Cleanup(bl.free)
	if err := b.SetStreamHandler(blockProto, bl.handle); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	openBusy(t, a, b.ID(), bl)
	return a, b, bl
}

// within runs f and fails the test if it has not returned after d.
func within(t testing.TB, d time.Duration, what string, f func()) time.Duration {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return 0
	}
}

func TestDisconnectAndCloseFromHandlerReturn(t *testing.T) {
	a, b := newManager(t), newManager(t)
	done := make(chan error, 1)
	if err := b.SetStreamHandler("/test/drop/1", func(s *mux.Stream) {
		done <- b.Disconnect(s.RemotePeer())
		// The link is going: the handler's context says so.
		select {
		case <-s.Context().Done():
		case <-time.After(waitTimeout):
			done <- errors.New("stream context not cancelled after Disconnect")
		}
		done <- nil
	}); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), "/test/drop/1", mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Disconnect from the handler: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Disconnect called from the peer's own handler did not return")
		}
	}

	// Close from a handler returns too, and the node closes.
	c := newManager(t)
	closed := make(chan error, 1)
	if err := c.SetStreamHandler("/test/close/1", func(s *mux.Stream) { closed <- c.Close() }); err != nil {
		t.Fatal(err)
	}
	connect(t, a, c)
	s, err = a.OpenStream(ctxT(t), c.ID(), "/test/close/1", mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from a handler: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close called from a handler did not return")
	}
	if err := c.Connect(ctxT(t), a.AddrInfo()); !errors.Is(err, peerlink.ErrClosed) {
		t.Fatalf("Connect after Close = %v, want ErrClosed", err)
	}
}

func TestDisconnectAndWaitWaitsForHandlers(t *testing.T) {
	a, b, bl := busyPair(t)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.DisconnectAndWait(ctx, a.ID()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DisconnectAndWait with a handler still busy = %v, want DeadlineExceeded", err)
	}
	if n := b.ConnectionCount(); n != 0 {
		t.Fatalf("ConnectionCount after Disconnect = %d, want 0", n)
	}
	if st := b.Status(a.ID()); st != peer.StatusDisconnected {
		t.Fatalf("Status after Disconnect, its handler still running = %v, want disconnected", st)
	}
	bl.free()
	if err := b.Disconnect(a.ID()); !errors.Is(err, peerlink.ErrNotConnected) {
		t.Fatalf("second Disconnect = %v, want ErrNotConnected", err)
	}

	// With the handler free, DisconnectAndWait returns once it has.
	a2, b2, bl2 := busyPair(t)
	bl2.free()
	if err := b2.DisconnectAndWait(ctxT(t), a2.ID()); err != nil {
		t.Fatalf("DisconnectAndWait: %v", err)
	}
}

func TestThirdPeerConnectsWhileReplacedLinkHandlerIsBusy(t *testing.T) {
	b := newManager(t)
	withEcho(b, t)
	bl := newBlocker()
	defer bl.free()
	if err := b.SetStreamHandler(blockProto, bl.handle); err != nil {
		t.Fatal(err)
	}
	sub := b.Subscribe(64)
	defer sub.Close()

	// a1 and a2 are one node, restarted: b still holds a1's link, whose
	// handler is busy, when a2 dials.
	id := newIdentity(t)
	a1 := newManager(t, func(c *peerlink.Config) { c.Identity = id })
	connect(t, a1, b)
	openBusy(t, a1, b.ID(), bl)
	a2 := newManager(t, func(c *peerlink.Config) { c.Identity = id })
	connect(t, a2, b)

	// A third peer is registered and served at once.
	c := newManager(t)
	within(t, 5*time.Second, "a third peer's round trip", func() {
		connect(t, c, b)
		roundTrip(t, c, b.ID(), []byte("hello"))
	})
	// b's events say a1's link was replaced, then a2's is up.
	var seq []peerlink.Event
	for len(seq) < 3 {
		seq = append(seq, waitEvent(t, sub, func(ev peerlink.Event) bool { return ev.Peer == id.ID() }))
	}
	if seq[0].Type != peerlink.EventConnected || seq[1].Type != peerlink.EventDisconnected || seq[2].Type != peerlink.EventConnected {
		t.Fatalf("events for the restarted peer = %v, want connected, disconnected, connected", seq)
	}
	if seq[1].Reason != peerlink.ReasonReplaced || seq[1].Link != seq[0].Link || seq[2].Link == seq[0].Link {
		t.Fatalf("replacement events carry the wrong links or reason: %v", seq)
	}
	roundTrip(t, a2, b.ID(), []byte("again"))
}

func TestDisconnectFreesTheConnectionSlotAtOnce(t *testing.T) {
	a := newManager(t, func(c *peerlink.Config) { c.MaxConnections = 1; c.MaxInboundConnections = 1 })
	b, c := newManager(t), newManager(t)
	for i := range 20 {
		to := b
		if i%2 == 1 {
			to = c
		}
		if err := a.Connect(ctxT(t), to.AddrInfo()); err != nil {
			t.Fatalf("round %d: Connect right after Disconnect: %v", i, err)
		}
		if n := a.ConnectionCount(); n != 1 {
			t.Fatalf("round %d: ConnectionCount = %d, want 1", i, n)
		}
		if err := a.Disconnect(to.ID()); err != nil {
			t.Fatalf("round %d: Disconnect: %v", i, err)
		}
		if n := a.ConnectionCount(); n != 0 {
			t.Fatalf("round %d: ConnectionCount after Disconnect = %d, want 0", i, n)
		}
	}
}

// stall makes the sockets it wraps stop draining on demand, as a socket
// whose remote stopped reading does: Write blocks until its deadline or
// Close. entered gets a value each time a Write blocks.
type stall struct {
	on      atomic.Bool
	entered chan struct{}
}

func newStall() *stall { return &stall{entered: make(chan struct{}, 1024)} }

func (s *stall) transport(tc transport.Config) (transport.Transport, error) {
	tc.RawConnWrapper = func(c net.Conn) net.Conn {
		return &stallConn{Conn: c, s: s, closed: make(chan struct{}), wake: make(chan struct{})}
	}
	return peerlink.TCP(tc)
}

type stallConn struct {
	net.Conn
	s         *stall
	mu        sync.Mutex
	wdl       time.Time
	wake      chan struct{} // closed and replaced when the deadline changes
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stallConn) Write(p []byte) (int, error) {
	for c.s.on.Load() {
		select {
		case c.s.entered <- struct{}{}:
		default:
		}
		c.mu.Lock()
		dl, wake := c.wdl, c.wake
		c.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-wake:
		}
	}
	return c.Conn.Write(p)
}

func (c *stallConn) setWriteDeadline(t time.Time) {
	c.mu.Lock()
	c.wdl = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestCloseWithStalledLinksIsBounded(t *testing.T) {
	st := newStall()
	a, err := peerlink.New(func() peerlink.Config {
		cfg := peerlink.DefaultConfig()
		cfg.Network = "peerlink-test"
		cfg.Transport = st.transport
		return cfg
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const stalled = 3
	var peers []*peerlink.ConnectionManager
	for range stalled {
		p := newManager(t)
		if err := p.SetStreamHandler("/test/sink/1", func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
			t.Fatal(err)
		}
		connect(t, a, p)
		peers = append(peers, p)
	}
	var streams []*mux.Stream
	for _, p := range peers {
		s, err := a.OpenStream(ctxT(t), p.ID(), "/test/sink/1", mux.PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	st.on.Store(true)
	var writers sync.WaitGroup
	defer writers.Wait()
	for _, s := range streams {
		writers.Add(1)
		go func() {
			defer writers.Done()
			_, _ = s.Write(make([]byte, 1<<20))
		}()
	}
	for range stalled {
		select {
		case <-st.entered:
		case <-time.After(waitTimeout):
			t.Fatal("writes never reached the stalled sockets")
		}
	}
	took := within(t, 2*time.Second, "Close with stalled links", func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Logf("Close with %d stalled links took %v", stalled, took)
}

func TestHandlerPanicLeavesNodeServing(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	if err := b.SetStreamHandler("/test/panic/1", func(s *mux.Stream) { panic("handler bug") }); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), "/test/panic/1", mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(waitTimeout))
	_, _ = s.Write([]byte("boom"))
	if _, err := io.ReadAll(s); err == nil {
		t.Fatal("the panicking handler's stream ended cleanly; want a reset")
	}
	roundTrip(t, a, b.ID(), []byte("still serving"))
	if n := b.HandlerPanics(); n != 1 {
		t.Fatalf("HandlerPanics = %d, want 1", n)
	}
	if st := b.Status(a.ID()); st != peer.StatusConnected {
		t.Fatalf("link after the panic: %v, want connected", st)
	}
}

func TestLinksSnapshotResynchronisesASubscriber(t *testing.T) {
	hub := newManager(t)
	sub := hub.Subscribe(1) // tiny: it will drop events
	defer sub.Close()
	var spokes []*peerlink.ConnectionManager
	for range 4 {
		s := newManager(t)
		connect(t, s, hub)
		spokes = append(spokes, s)
	}
	pollUntil(t, "the hub registers every spoke", func() bool { return hub.ConnectionCount() == len(spokes) })
	if sub.Dropped() == 0 {
		t.Fatal("the subscription dropped nothing; the test needs it to")
	}
	// Resynchronise: the snapshot is the state; stale events are ignored.
	known := map[peerlink.LinkID]peer.ID{}
	for _, l := range hub.Links() {
		known[l.Link] = l.Peer
	}
	for {
		select {
		case ev := <-sub.C:
			switch ev.Type {
			case peerlink.EventConnected:
				known[ev.Link] = ev.Peer
			case peerlink.EventDisconnected:
				delete(known, ev.Link)
			}
			continue
		default:
		}
		break
	}
	if len(known) != len(spokes) {
		t.Fatalf("resynchronised view has %d links, want %d", len(known), len(spokes))
	}
	for _, s := range spokes {
		info, err := hub.ConnectionInfo(s.ID())
		if err != nil {
			t.Fatal(err)
		}
		if known[info.Link] != s.ID() {
			t.Fatalf("link %v of %s missing from the resynchronised view", info.Link, s.ID().ShortString())
		}
	}
}

func TestShutdownDrainsStreamsAndRefusesNewOnes(t *testing.T) {
	a, b := newManager(t), newManager(t)
	bl := newBlocker()
	defer bl.free()
	if err := b.SetStreamHandler(blockProto, func(s *mux.Stream) {
		bl.handle(s)
		_, _ = io.Copy(s, s) // then echo what is left
	}); err != nil {
		t.Fatal(err)
	}
	withEcho(a, t)
	connect(t, a, b)
	inflight := openBusy(t, a, b.ID(), bl)

	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(ctxT(t)) }()

	// b refuses to open streams; a learns that b is going away.
	pollUntil(t, "b refuses new streams", func() bool {
		s, err := b.OpenStream(ctxT(t), a.ID(), echoProto, mux.PriorityNormal)
		if err == nil {
			s.Reset() // opened before Shutdown began
		}
		return errors.Is(err, peerlink.ErrShuttingDown)
	})
	pollUntil(t, "a sees b going away", func() bool {
		s, err := a.OpenStream(peerlink.WithNoDial(ctxT(t)), b.ID(), echoProto, mux.PriorityNormal)
		if err == nil {
			s.Reset()
		}
		return errors.Is(err, peerlink.ErrGoAway)
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a stream was in flight", err)
	default:
	}
	// The stream in flight finishes intact.
	bl.free()
	msg := bytes.Repeat([]byte("drain"), 1000)
	if _, err := inflight.Write(msg); err != nil {
		t.Fatalf("Write on the in-flight stream: %v", err)
	}
	if err := inflight.Close(); err != nil { // a half close: reads go on
		t.Fatalf("Close: %v", err)
	}
	got, err := io.ReadAll(inflight)
	if want := append([]byte("x"), msg...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("in-flight stream: read %d bytes, err %v; want %d bytes echoed", len(got), err, len(msg))
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return once the streams finished")
	}
}

func TestShutdownEndsWithContext(t *testing.T) {
	_, b, bl := busyPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var err error
	within(t, 5*time.Second, "Shutdown with a stuck handler", func() { err = b.Shutdown(ctx) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	bl.free()
}

func TestNoDialOpensOnlyOverAnOpenLink(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	_, err := a.OpenStream(peerlink.WithNoDial(ctxT(t)), b.ID(), echoProto, mux.PriorityNormal)
	if !errors.Is(err, peerlink.ErrNoLink) || !errors.Is(err, peerlink.ErrNotConnected) {
		t.Fatalf("OpenStream with no link and WithNoDial = %v, want ErrNoLink", err)
	}
	if st := a.Status(b.ID()); st != peer.StatusDisconnected {
		t.Fatalf("WithNoDial dialed: status %v", st)
	}
	connect(t, a, b)
	s, err := a.OpenStream(peerlink.WithNoDial(ctxT(t)), b.ID(), echoProto, mux.PriorityNormal)
	if err != nil {
		t.Fatalf("OpenStream over an open link with WithNoDial: %v", err)
	}
	s.Reset()
}

// silentListener accepts TCP connections and never answers: a black hole
// on loopback (the socket opens, the handshake never completes).
func silentListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

func TestBlackHoledFirstAddressDoesNotStopTheSecond(t *testing.T) {
	a, b := newManager(t), newManager(t)
	hole := silentListener(t)
	info := peer.AddrInfo{ID: b.ID(), Addrs: []string{hole, b.Addrs()[0]}}
	start := time.Now()
	if err := a.Connect(ctxT(t), info); err != nil {
		t.Fatalf("Connect with a black-holed first address: %v", err)
	}
	took := time.Since(start)
	t.Logf("connected through the second address after %v (DialAddrDelay %v)", took, peerlink.DefaultDialAddrDelay)
	if took >= peerlink.DefaultHandshakeTimeout {
		t.Fatalf("Connect took %v: it waited for the black hole", took)
	}
	if st := a.BreakerState(b.ID()); st.String() != "closed" {
		t.Fatalf("breaker after a successful dial: %v", st)
	}
}

func TestInboundAcceptedWhileOurDialCannotReachThePeer(t *testing.T) {
	// small wins every tie-break; it keeps big as a persistent peer at an
	// address that never answers, so its dial to big is always in flight.
	ids := []*peer.Identity{newIdentity(t), newIdentity(t)}
	if ids[1].ID().Less(ids[0].ID()) {
		ids[0], ids[1] = ids[1], ids[0]
	}
	hole := silentListener(t)
	small := newManager(t, func(c *peerlink.Config) { c.Identity = ids[0] })
	big := newManager(t, func(c *peerlink.Config) { c.Identity = ids[1] })
	withEcho(small, t)
	if err := small.AddPersistentPeer(peer.AddrInfo{ID: big.ID(), Addrs: []string{hole}}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "small dials big", func() bool { return small.Status(big.ID()) == peer.StatusConnecting })
	connect(t, big, small)
	roundTrip(t, big, small.ID(), []byte("let me in"))
	if st := small.Status(big.ID()); st != peer.StatusConnected {
		t.Fatalf("small's status for big = %v, want connected", st)
	}
}

// A node that closes a link the peer dialed and dials the peer at once
// gets a link: the peer, which may still hold the old link when the new
// dial arrives, must not take it for a crossed dial.
func TestRedialRightAfterDisconnect(t *testing.T) {
	for i := range 20 {
		a, b := newManager(t), newManager(t)
		if !b.ID().Less(a.ID()) {
			a, b = b, a // b wins tie-breaks: it keeps the links it dialed
		}
		withEcho(b, t)
		sub := a.Subscribe(8)
		connect(t, b, a) // b dialed: at b an outbound link
		waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
		sub.Close()
		if err := a.Disconnect(b.ID()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := a.Connect(ctxT(t), b.AddrInfo()); err != nil {
			t.Fatalf("run %d: redial: %v", i, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("run %d: redial took %v", i, d)
		}
		roundTrip(t, a, b.ID(), []byte("again"))
	}
}
