package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A hostile remote, writing yamux frames by hand (it is the dialing side,
// so its stream IDs are odd), and reading what the session sends back.

type hostile struct {
	t    testing.TB
	c    net.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	rsts map[uint32]uint32 // stream → code of the session's RST
	acks int               // ping answers
	done chan struct{}     // the read loop ended
}

// newHostile starts a server session over one end of a link and returns
// a hostile client on the other. read says whether the client reads what
// the session sends (a client that does not stops the session's writes
// once the link's buffers are full).
func newHostile(t testing.TB, cc, sc net.Conn, scfg Config, route func(string) Handler, read bool) (*hostile, *Session) {
	t.Helper()
	srv, err := NewSession(sc, testPeer(t, 2), testPeer(t, 1), false, scfg, route)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, c: cc, rsts: make(map[uint32]uint32), done: make(chan struct{})}
	t.Cleanup(func() {
		cc.Close()
		srv.Close()
		<-h.done
	})
	if read {
		go h.readLoop()
	} else {
		close(h.done)
	}
	return h, srv
}

func (h *hostile) readLoop() {
	defer close(h.done)
	var hdr [frameHeaderLen]byte
	for {
		if _, err := io.ReadFull(h.c, hdr[:]); err != nil {
			return
		}
		flags := binary.BigEndian.Uint16(hdr[2:4])
		id := binary.BigEndian.Uint32(hdr[4:8])
		length := binary.BigEndian.Uint32(hdr[8:12])
		switch hdr[1] {
		case typeData:
			if _, err := io.CopyN(io.Discard, h.c, int64(length)); err != nil {
				return
			}
		case typeWindowUpdate:
			if flags&flagRST != 0 {
				h.mu.Lock()
				h.rsts[id] = length
				h.mu.Unlock()
			}
		case typePing:
			if flags&flagACK != 0 {
				h.mu.Lock()
				h.acks++
				h.mu.Unlock()
			}
		}
	}
}

// send writes frames; it reports the link's error (the session may have
// cut the hostile off).
func (h *hostile) send(frames ...[]byte) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	_, err := h.c.Write(b)
	return err
}

// dataFrames returns data frames for stream id carrying prefix and then
// n filler bytes, at most 16 KiB of body each.
func dataFrames(id uint32, prefix []byte, n int) [][]byte {
	var out [][]byte
	body := append(append([]byte(nil), prefix...), make([]byte, n)...)
	for len(body) > 0 {
		k := min(len(body), 16<<10)
		out = append(out, append(frame(typeData, 0, id, uint32(k)), body[:k]...))
		body = body[k:]
	}
	return out
}

// open opens stream id for protocol with n bytes of data after the
// header (no header if protocol is empty).
func (h *hostile) open(id uint32, protocol string, n int) error {
	var prefix []byte
	if protocol != "" {
		prefix = appendStreamHeader(nil, PriorityNormal, protocol)
	}
	return h.send(append([][]byte{frame(typeWindowUpdate, flagSYN, id, 0)}, dataFrames(id, prefix, n)...)...)
}

func (h *hostile) resets(code ResetCode) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.rsts {
		if c == uint32(code) {
			n++
		}
	}
	return n
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// holdRoute serves "hold": the handler reads nothing until release is
// closed (or, with readOne, reads one byte first).
func holdRoute(release chan struct{}, readOne bool) func(string) Handler {
	return routeOf(map[string]Handler{"hold": func(s *Stream) {
		if readOne {
			_, _ = s.Read(make([]byte, 1))
		}
		select {
		case <-release:
		case <-s.Context().Done():
		}
	}})
}

// 400 streams of 128 KiB against a memory budget of 16 MiB: the streams
// past the limit are refused at their SYN, their data is dropped before
// anything buffers it, and the heap grows by less than the budget.
func TestHostileRefusedStreamFlood(t *testing.T) {
	const (
		budget  = 16 << 20
		streams = 400
		each    = 128 << 10
	)
	scfg := testConfig()
	scfg.MaxStreams, scfg.MemoryBudget = 64, budget
	release := make(chan struct{})
	defer close(release)
	before := heapInUse()
	cc, sc := tcpPair(t)
	h, srv := newHostile(t, cc, sc, scfg, holdRoute(release, false), true)
	limit := srv.Config().MaxStreams
	if want := int(budget / StreamMemory(DefaultStreamWindow)); limit != want {
		t.Fatalf("MaxStreams %d under a budget of %d, want %d", limit, budget, want)
	}
	for i := range streams {
		if err := h.open(uint32(2*i+1), "hold", each); err != nil {
			t.Fatal(err)
		}
	}
	refused := streams - limit
	waitFor(t, 20*time.Second, "every refusal to reach the opener", func() bool { return h.resets(ResetStreamLimit) == refused })
	waitFor(t, 20*time.Second, "the held streams' handlers", func() bool { return srv.Handlers() == limit })
	// The flood's last frames are in once a ping sent after them is answered.
	if err := h.send(frame(typePing, flagSYN, 0, 7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the ping's answer", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.acks == 1 })
	growth := heapInUse() - before
	st := srv.Stats()
	t.Logf("heap growth %.1f MiB with %d streams held and %d refused (budget %d MiB); junk dropped %d bytes; goroutines %d",
		float64(growth)/(1<<20), limit, refused, budget>>20, st.JunkBytes, runtime.NumGoroutine())
	if growth > budget+2<<20 {
		t.Errorf("heap grew by %d bytes, want at most the budget (%d) + 2 MiB", growth, budget)
	}
	if st.LimitRefusals != uint64(refused) || st.JunkBytes < uint64(refused*each) {
		t.Errorf("stats %+v: want %d refusals and their %d bytes dropped", st, refused, refused*each)
	}
	if err := srv.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	if n := srv.ys.NumStreams(); n != limit {
		t.Errorf("yamux holds %d streams, want only the %d admitted", n, limit)
	}
}

// Streams whose reader is slow: each receives a full window, and the
// heap stays within the budget, counted as yamux really allocates.
func TestHostileSlowReaders(t *testing.T) {
	const budget = 16 << 20
	scfg := testConfig()
	scfg.MemoryBudget = budget
	release := make(chan struct{})
	defer close(release)
	before := heapInUse()
	cc, sc := tcpPair(t)
	h, srv := newHostile(t, cc, sc, scfg, holdRoute(release, true), true)
	limit := srv.Config().MaxStreams
	hdr := appendStreamHeader(nil, PriorityNormal, "hold")
	for i := range limit {
		id := uint32(2*i + 1)
		// A full window, its header included: the most the remote may send.
		if err := h.open(id, "hold", DefaultStreamWindow-len(hdr)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.send(frame(typePing, flagSYN, 0, 7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the ping's answer", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.acks == 1 })
	growth := heapInUse() - before
	t.Logf("heap growth %.1f MiB with %d slow streams holding a full window each (budget %d MiB)", float64(growth)/(1<<20), limit, budget>>20)
	if growth > budget+2<<20 {
		t.Errorf("heap grew by %d bytes, want at most the budget (%d) + 2 MiB", growth, budget)
	}
	if err := srv.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}

// A remote that keeps sending on a stream the session reset, beyond what
// could have been in flight, is cut off; so is one sending data for
// streams it never opened. What it sent was never buffered.
func TestHostileDataAfterReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(h *hostile) error
	}{
		{"refused protocol", func(h *hostile) error {
			if err := h.open(1, "nope", 0); err != nil {
				return err
			}
			waitFor(h.t, 10*time.Second, "the refusal", func() bool { return h.resets(ResetProtocolNotSupported) == 1 })
			for range 64 { // 1 MiB, 4 windows
				if err := h.send(dataFrames(1, nil, 16<<10)...); err != nil {
					return err
				}
			}
			return nil
		}},
		{"never opened", func(h *hostile) error {
			for range 64 {
				if err := h.send(dataFrames(99, nil, 16<<10)...); err != nil {
					return err
				}
			}
			return nil
		}},
		{"opened twice", func(h *hostile) error {
			if err := h.open(1, "nope", 0); err != nil {
				return err
			}
			waitFor(h.t, 10*time.Second, "the refusal", func() bool { return h.resets(ResetProtocolNotSupported) == 1 })
			return h.open(1, "nope", 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := tcpPair(t)
			h, srv := newHostile(t, cc, sc, testConfig(), nil, true)
			_ = tc.run(h) // fails once the session cuts the link
			select {
			case <-srv.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the session is still up")
			}
			if err := srv.Err(); !errors.Is(err, ErrProtocolViolation) {
				t.Fatalf("session ended with %v, want ErrProtocolViolation", err)
			}
			t.Logf("%v; junk dropped: %d bytes", srv.Err(), srv.Stats().JunkBytes)
		})
	}
}

// Data sent on a stream after its handler returned is dropped, and once
// a window of it has been, the sender is told (code 7): nothing buffers
// it, and the writer does not write into the void for ever.
func TestDataAfterHandlerReturned(t *testing.T) {
	cc, sc := tcpPair(t)
	done := make(chan struct{})
	h, srv := newHostile(t, cc, sc, testConfig(), routeOf(map[string]Handler{"once": func(s *Stream) {
		_, _ = s.Read(make([]byte, 1))
		close(done)
	}}), true)
	if err := h.open(1, "once", 1); err != nil {
		t.Fatal(err)
	}
	<-done
	waitFor(t, 10*time.Second, "the handler's stream to be released", func() bool { in, _ := srv.StreamCounts(); return in == 0 })
	for range 17 { // a window and a frame
		if err := h.send(dataFrames(1, nil, 16<<10)...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the reset of code 7", func() bool { return h.resets(ResetReceiverGone) == 1 })
	if err := srv.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	// The filter sees a whole read of the link (here likely all 17
	// frames) before yamux parses it, so the code 7 can leave before
	// yamux has handled the reset injected ahead of those frames: wait
	// for yamux to forget the stream, which it must without any further
	// frame.
	waitFor(t, 10*time.Second, "yamux to forget the stream", func() bool { return srv.ys.NumStreams() == 0 })
}

// Header-less streams from one peer hold slots of that peer's session
// only: the node's own critical (and normal) streams to another peer
// open, and once the flooder's headers arrive it gets at most its share
// of the node's inbound pool.
func TestHostileCannotTakeTheNodesSlots(t *testing.T) {
	node := NewNodeLimits(8, 8, 2, 0)
	acfg := testConfig()
	acfg.Node = node
	cc, sc := tcpPair(t)
	release := make(chan struct{})
	defer close(release)
	h, _ := newHostile(t, cc, sc, acfg, holdRoute(release, false), true)

	bcfg := testConfig()
	bcfg.Node = node
	bcfg.FailFastStreams = true
	c2, s2 := tcpPair(t)
	b := newPair(t, c2, s2, bcfg, testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))

	const flood = 64
	for i := range flood {
		if err := h.open(uint32(2*i+1), "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.send(frame(typePing, flagSYN, 0, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the flood to be in", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.acks == 1 })
	if n := node.Inbound.InUse(); n != 0 {
		t.Errorf("header-less streams hold %d node slots", n)
	}
	for _, prio := range []Priority{PriorityCritical, PriorityNormal} {
		s, err := b.client.OpenStream(context.Background(), "echo", prio)
		if err != nil {
			t.Fatalf("%v stream to another peer during the flood: %v", prio, err)
		}
		if _, err := s.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got, err := io.ReadAll(s); err != nil || string(got) != "ping" {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	// Now the headers: the flooder gets its share of the node's pool.
	hdr := appendStreamHeader(nil, PriorityCritical, "hold")
	for i := range flood {
		if err := h.send(dataFrames(uint32(2*i+1), hdr, 0)...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the streams past the share to be refused", func() bool {
		return h.resets(ResetStreamLimit) == flood-node.PeerInbound
	})
	if n := node.Inbound.InUse(); n != node.PeerInbound {
		t.Errorf("the flooder holds %d node slots, want its share %d", n, node.PeerInbound)
	}
}

// Pings sent faster than their answers are read: answers queue up to a
// bound, then the session ends, having started no goroutine per ping.
func TestHostilePingFlood(t *testing.T) {
	base := runtime.NumGoroutine()
	cc, sc := net.Pipe() // no buffer: answers block at once
	h, srv := newHostile(t, cc, sc, testConfig(), nil, false)
	peak := 0
	deadline := time.After(20 * time.Second)
	go func() {
		for i := range 100_000 {
			if h.send(frame(typePing, flagSYN, 0, uint32(i))) != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-srv.Done():
			t.Logf("%v; goroutines peaked %d above the start", srv.Err(), peak)
			if !errors.Is(srv.Err(), ErrProtocolViolation) {
				t.Fatalf("session ended with %v, want ErrProtocolViolation", srv.Err())
			}
			if peak > 10 {
				t.Errorf("goroutines rose by %d during the flood", peak)
			}
			return
		case <-time.After(time.Millisecond):
			peak = max(peak, runtime.NumGoroutine()-base)
		case <-deadline:
			t.Fatal("the session is still up")
		}
	}
}

// Window updates that would overflow a 32-bit window, and streams opened
// after the remote's GoAway: the session stays up and keeps serving.
func TestHostileWindowOverflowAndGoAway(t *testing.T) {
	cc, sc := tcpPair(t)
	var (
		mu  sync.Mutex
		got int
	)
	served := make(chan struct{}, 8)
	h, srv := newHostile(t, cc, sc, testConfig(), routeOf(map[string]Handler{"sink": func(s *Stream) {
		n, _ := io.Copy(io.Discard, s)
		mu.Lock()
		got += int(n)
		mu.Unlock()
		served <- struct{}{}
	}}), true)
	if err := h.open(1, "sink", 100); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := h.send(frame(typeWindowUpdate, 0, 1, 0xffffffff)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.send(frame(typeWindowUpdate, flagFIN, 1, 0)); err != nil {
		t.Fatal(err)
	}
	<-served
	if err := h.send(frame(typeGoAway, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := h.open(3, "sink", 10); err != nil {
		t.Fatal(err)
	}
	if err := h.send(frame(typeWindowUpdate, flagFIN, 3, 0)); err != nil {
		t.Fatal(err)
	}
	<-served
	if err := srv.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	if _, err := srv.OpenStream(context.Background(), "x", PriorityNormal); !errors.Is(err, ErrGoAway) {
		t.Errorf("open after the remote's GoAway: %v, want ErrGoAway", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 110 {
		t.Errorf("handlers read %d bytes, want 110", got)
	}
}
