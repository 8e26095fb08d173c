package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

func TestOpenAccept(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			got := make(chan *Stream, 1)
			release := make(chan struct{})
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"/test/open/1": func(s *Stream) {
					got <- s
					<-release
				},
			}))
			s, err := p.client.OpenStream(context.Background(), "/test/open/1", PriorityHigh)
			if err != nil {
				t.Fatal(err)
			}
			if s.Protocol() != "/test/open/1" || s.Priority() != PriorityHigh || s.Inbound() {
				t.Fatalf("opener: protocol %q priority %v inbound %v", s.Protocol(), s.Priority(), s.Inbound())
			}
			if s.ID()%2 != 1 {
				t.Errorf("client-opened stream ID %d, want odd", s.ID())
			}
			if _, err := s.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.Protocol() != "/test/open/1" || r.Priority() != PriorityHigh || !r.Inbound() || r.ID() != s.ID() {
				t.Fatalf("acceptor: protocol %q priority %v inbound %v id %d", r.Protocol(), r.Priority(), r.Inbound(), r.ID())
			}
			if r.LocalPeer() != p.server.LocalPeer() || r.RemotePeer() != p.client.LocalPeer() ||
				s.LocalPeer() != p.client.LocalPeer() || s.RemotePeer() != p.server.LocalPeer() {
				t.Error("peer IDs do not match the sessions'")
			}
			if in, out := p.client.StreamCounts(); in != 0 || out != 1 {
				t.Errorf("client counts in=%d out=%d, want 0/1", in, out)
			}
			if in, out := p.server.StreamCounts(); in != 1 || out != 0 {
				t.Errorf("server counts in=%d out=%d, want 1/0", in, out)
			}
			if s.LocalAddr() == nil || s.RemoteAddr() == nil {
				t.Error("nil address")
			}
			close(release)
			// The handler returned: the session closes the stream, and the
			// opener reads the payload-less EOF.
			if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("read after handler returned: %d, %v; want EOF", n, err)
			}
			s.Close()
			s.Close() // idempotent
			if n := p.client.NumStreams(); n != 0 {
				t.Errorf("client NumStreams after close = %d", n)
			}
			if n := p.server.NumStreams(); n != 0 {
				t.Errorf("server NumStreams after handler = %d", n)
			}
			st := p.client.Stats()
			if st.StreamsOpened != 1 || p.server.Stats().StreamsAccepted != 1 {
				t.Errorf("stats: opened %d accepted %d", st.StreamsOpened, p.server.Stats().StreamsAccepted)
			}
		})
	}
}

func echoHandler(s *Stream) {
	io.Copy(s, s)
}

func TestEcho8MiB(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the cancellable path
			defer cancel()
			s, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			const size = 8 << 20
			data := make([]byte, size)
			rng := rand.NewChaCha8([32]byte{7})
			rng.Read(data)
			want := sha256.Sum256(data)
			errc := make(chan error, 1)
			go func() {
				// Odd write sizes, so frames and header joins vary.
				rest := data
				for len(rest) > 0 {
					k := min(len(rest), 1+int(rest[0])*300)
					if _, err := s.Write(rest[:k]); err != nil {
						errc <- err
						return
					}
					rest = rest[k:]
				}
				errc <- s.Close()
			}()
			h := sha256.New()
			n, err := io.Copy(h, s)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("echoed %d bytes, hash mismatch=%v", n, !bytes.Equal(h.Sum(nil), want[:]))
			}
			if p.client.BytesOut() < size || p.client.BytesIn() < size || p.server.BytesIn() < size {
				t.Errorf("byte counters: client out %d in %d, server in %d", p.client.BytesOut(), p.client.BytesIn(), p.server.BytesIn())
			}
		})
	}
}

// TestHeaderWithFirstWrite shows that opening costs no round trip: the
// opener's OpenStream and first Write return while the remote has not
// even looked up the protocol, and the stream header travels in the same
// frame, and the same link Write, as the first payload.
func TestHeaderWithFirstWrite(t *testing.T) {
	cc, sc := net.Pipe()
	rec := &recordConn{Conn: cc}
	routed := make(chan string, 1)
	unblock := make(chan struct{})
	got := make(chan []byte, 1)
	route := func(p string) Handler {
		routed <- p
		<-unblock // the acceptor does nothing until released
		return func(s *Stream) {
			b := make([]byte, 5)
			io.ReadFull(s, b)
			got <- b
		}
	}
	p := newPair(t, rec, sc, testConfig(), testConfig(), nil, route)
	before := len(rec.snapshot())
	s, err := p.client.OpenStream(context.Background(), "hdr/1", PriorityCritical)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	writes := rec.snapshot()[before:]
	// The SYN (a window update), then one data frame: 12 + 3 + 5 + 5.
	if len(writes) != 2 {
		t.Fatalf("%d link writes for open+write, want 2: %v", len(writes), writes)
	}
	syn, data := writes[0], writes[1]
	if len(syn) != 12 || syn[1] != typeWindowUpdate || binary.BigEndian.Uint16(syn[2:4])&1 == 0 {
		t.Errorf("first write %x is not a SYN window update", syn)
	}
	wantBody := append(appendStreamHeader(nil, PriorityCritical, "hdr/1"), "hello"...)
	if len(data) != 12+len(wantBody) || data[1] != typeData ||
		binary.BigEndian.Uint32(data[8:12]) != uint32(len(wantBody)) || !bytes.Equal(data[12:], wantBody) {
		t.Errorf("second write %x, want one data frame with body %x", data, wantBody)
	}
	if p := <-routed; p != "hdr/1" {
		t.Errorf("routed %q", p)
	}
	close(unblock)
	if b := <-got; string(b) != "hello" {
		t.Errorf("handler read %q", b)
	}
}

func TestReadFirstDispatched(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"greet": func(s *Stream) { s.Write([]byte("hi " + s.Priority().String())) },
			}))
			s, err := p.client.OpenStream(context.Background(), "greet", PriorityLow)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(s)
			if err != nil || string(b) != "hi low" {
				t.Fatalf("read %q, %v", b, err)
			}
			s.Close()
		})
	}
}

// TestCloseWithoutWrite: an opener that only closes still sends the
// header, so the handler runs and reads EOF.
func TestCloseWithoutWrite(t *testing.T) {
	cc, sc := net.Pipe()
	ran := make(chan error, 1)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"quiet": func(s *Stream) {
			_, err := s.Read(make([]byte, 1))
			ran <- err
		},
	}))
	s, err := p.client.OpenStream(context.Background(), "quiet", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := <-ran; err != io.EOF {
		t.Fatalf("handler read %v, want EOF", err)
	}
}

func TestUnknownProtocol(t *testing.T) {
	check := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrProtocolNotSupported) || !errors.Is(err, ErrStreamReset) {
			t.Fatalf("error %v: want ErrProtocolNotSupported and ErrStreamReset", err)
		}
		var re *ResetError
		if !errors.As(err, &re) || re.Code != ResetProtocolNotSupported || !re.Remote || re.Protocol != "nope/1" {
			t.Fatalf("error %#v", err)
		}
	}
	for _, l := range links {
		t.Run(l.name+"/read", func(t *testing.T) {
			cc, sc := l.pair(t)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
			s, err := p.client.OpenStream(context.Background(), "nope/1", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write([]byte("request")); err != nil {
				t.Fatalf("first write: %v (no round trip, so it must succeed)", err)
			}
			_, err = s.Read(make([]byte, 10))
			check(t, err)
			// The acceptor counted it before resetting.
			if st := p.server.Stats(); st.UnknownProtocol != 1 || st.ResetsSent[ResetProtocolNotSupported] != 1 {
				t.Errorf("server stats %+v", st)
			}
			if st := p.client.Stats(); st.ResetsReceived[ResetProtocolNotSupported] != 1 {
				t.Errorf("client stats %+v", st)
			}
			s.Close()
			if n := p.client.NumStreams(); n != 0 {
				t.Errorf("NumStreams %d after close", n)
			}
		})
		t.Run(l.name+"/write", func(t *testing.T) {
			cc, sc := l.pair(t)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
			s, err := p.client.OpenStream(context.Background(), "nope/1", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			// Writes succeed until the reset comes back; no Read is used.
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err = s.Write([]byte("x"))
				if err != nil || time.Now().After(deadline) {
					break
				}
				runtime.Gosched()
			}
			check(t, err)
			// Every later Write fails the same way.
			_, err = s.Write([]byte("y"))
			check(t, err)
			s.Reset()
		})
	}
}

func TestStreamLimitInbound(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			scfg := testConfig()
			scfg.MaxStreams = 1
			hold := make(chan struct{})
			started := make(chan struct{}, 1)
			p := newPair(t, cc, sc, testConfig(), scfg, nil, routeOf(map[string]Handler{
				"hold": func(s *Stream) {
					started <- struct{}{}
					<-hold
				},
			}))
			defer close(hold)
			s1, err := p.client.OpenStream(context.Background(), "hold", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			s1.Write([]byte("a"))
			<-started
			s2, err := p.client.OpenStream(context.Background(), "hold", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s2.Read(make([]byte, 1))
			if !errors.Is(err, ErrStreamLimit) || !errors.Is(err, ErrStreamReset) {
				t.Fatalf("read on refused stream: %v, want ErrStreamLimit+ErrStreamReset", err)
			}
			if st := p.server.Stats(); st.LimitRefusals != 1 || st.ResetsSent[ResetStreamLimit] != 1 {
				t.Errorf("server stats %+v", st)
			}
			if in, _ := p.server.StreamCounts(); in != 1 {
				t.Errorf("server inbound %d, want 1", in)
			}
			s2.Close()
			s1.Close()
		})
	}
}

func TestOpenStreamLimitLocal(t *testing.T) {
	cc, sc := net.Pipe()
	ccfg := testConfig()
	ccfg.MaxStreams = 2
	// The behaviour before slot waiting and reserved slots, now opt-in.
	ccfg.FailFastStreams = true
	ccfg.ReservedStreams = -1
	p := newPair(t, cc, sc, ccfg, testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))
	ctx := context.Background()
	a, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.OpenStream(ctx, "echo", PriorityNormal); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("third open: %v, want ErrStreamLimit", err)
	}
	a.Close()
	closeAndDrain(t, a) // Close again (idempotent); the remote's FIN frees a's slot
	b.Reset()
	b.Close()
	if n := p.client.NumStreams(); n != 0 {
		t.Fatalf("NumStreams %d after close and reset", n)
	}
	for range 2 {
		s, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	if got := p.client.Stats().OpenLimited; got != 1 {
		t.Errorf("OpenLimited %d", got)
	}
}

// TestStreamFlood: 10,000 inbound opens against MaxStreams=64, with 64
// handlers holding their slots. Every extra stream is refused with code
// 2 and no goroutine is started for it: the process's goroutine count
// stays within a small constant of its count before the flood. Each
// held stream takes one of the node's inbound slots too, which all come
// back.
func TestStreamFlood(t *testing.T) {
	cc, sc := net.Pipe()
	ccfg := testConfig()
	ccfg.StreamOpenTimeout = -1 // no goroutine per pending open on the flooder
	scfg := testConfig()
	scfg.MaxStreams, scfg.ReservedStreams = 64, -1
	scfg.Node = NewNodeLimits(1000, 1000, 100, 0)
	scfg.Node.PeerInbound = 64
	hold := make(chan struct{})
	var started sync.WaitGroup
	started.Add(64)
	p := newPair(t, cc, sc, ccfg, scfg, nil, routeOf(map[string]Handler{
		"hold": func(s *Stream) {
			started.Done()
			<-hold
		},
	}))
	ctx := context.Background()
	held := make([]*Stream, 0, 64)
	for range 64 {
		s, err := p.client.OpenStream(ctx, "hold", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{1})
		held = append(held, s)
	}
	started.Wait()
	base := runtime.NumGoroutine()
	peak := base
	const flood = 10000
	for i := range flood {
		s, err := p.client.OpenStream(ctx, "hold", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{1})
		s.Close()
		if i%50 == 0 {
			peak = max(peak, runtime.NumGoroutine())
		}
	}
	// One more, read until its reset: the flood's resets are all in.
	s, err := p.client.OpenStream(ctx, "hold", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("read: %v, want ErrStreamLimit", err)
	}
	s.Close()
	peak = max(peak, runtime.NumGoroutine())
	t.Logf("goroutines: %d before the flood, peak %d during it", base, peak)
	if peak > base+8 {
		t.Errorf("goroutines rose from %d to %d during the flood", base, peak)
	}
	if got := p.server.Stats().LimitRefusals; got != flood+1 {
		t.Errorf("server counted %d limit refusals, want %d", got, flood+1)
	}
	if in, _ := p.server.StreamCounts(); in != 64 {
		t.Errorf("server inbound %d, want 64", in)
	}
	if n := scfg.Node.Inbound.InUse(); n != 64 {
		t.Errorf("node inbound slots in use %d, want 64", n)
	}
	if got := p.server.StreamsByPriority(); got != [NumPriorities]int{PriorityNormal: 64} {
		t.Errorf("server StreamsByPriority %v", got)
	}
	p.server.sched.mu.Lock()
	flows := len(p.server.sched.flows)
	p.server.sched.mu.Unlock()
	if flows != 64 {
		t.Errorf("server scheduler tracks %d flows, want 64 (refused ones are dropped)", flows)
	}
	p.server.mu.Lock()
	tracked := len(p.server.streams)
	p.server.mu.Unlock()
	if tracked != 64 {
		t.Errorf("server tracks %d streams, want 64 (refused ones are never tracked)", tracked)
	}
	p.client.mu.Lock()
	tracked = len(p.client.streams)
	p.client.mu.Unlock()
	if tracked > 64+minSweep+1 {
		t.Errorf("client still tracks %d streams after the flood", tracked)
	}
	// yamux on both sides lets go of the refused streams.
	waitFor(t, 10*time.Second, "yamux to free refused streams", func() bool {
		return p.server.ys.NumStreams() == 64 && p.client.ys.NumStreams() == 64
	})
	close(hold)
	for _, s := range held {
		s.Close()
	}
	waitFor(t, 10*time.Second, "handlers to return their slots", func() bool { return scfg.Node.Inbound.InUse() == 0 })
}

func TestReset(t *testing.T) {
	for _, l := range links {
		t.Run(l.name+"/opener resets", func(t *testing.T) {
			cc, sc := l.pair(t)
			readErr := make(chan error, 1)
			writeErr := make(chan error, 1)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"r": func(s *Stream) {
					b := make([]byte, 1)
					io.ReadFull(s, b)
					s.Write(b) // ack
					_, err := s.Read(b)
					readErr <- err
					_, err = s.Write(b)
					writeErr <- err
				},
			}))
			s, err := p.client.OpenStream(context.Background(), "r", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte{1})
			io.ReadFull(s, make([]byte, 1))
			s.Reset()
			for _, c := range []chan error{readErr, writeErr} {
				err := <-c
				var re *ResetError
				if !errors.Is(err, ErrStreamReset) || !errors.As(err, &re) || re.Code != ResetApplication || !re.Remote {
					t.Errorf("remote saw %v, want application reset", err)
				}
				if errors.Is(err, ErrProtocolNotSupported) || errors.Is(err, ErrStreamLimit) {
					t.Errorf("%v matches another reason", err)
				}
			}
			if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
				t.Errorf("local read after Reset: %v", err)
			}
			if _, err := s.Write([]byte{1}); !errors.Is(err, ErrStreamReset) {
				t.Errorf("local write after Reset: %v", err)
			}
			if p.client.NumStreams() != 0 {
				t.Error("slot not released by Reset")
			}
		})
		t.Run(l.name+"/handler resets", func(t *testing.T) {
			cc, sc := l.pair(t)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"r": func(s *Stream) { s.Reset() },
			}))
			s, err := p.client.OpenStream(context.Background(), "r", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Read(make([]byte, 1))
			if !errors.Is(err, ErrStreamReset) {
				t.Fatalf("opener read %v, want ErrStreamReset", err)
			}
			if st := p.client.Stats(); st.ResetsReceived[ResetApplication] != 1 {
				t.Errorf("client stats %+v", st)
			}
		})
	}
}

// TestResetWakesBlocked: Reset releases this side's blocked Read and Write.
func TestResetWakesBlocked(t *testing.T) {
	cc, sc := net.Pipe()
	hold := make(chan struct{})
	defer close(hold)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"sink": func(s *Stream) { <-hold }, // reads nothing
	}))
	s, err := p.client.OpenStream(context.Background(), "sink", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	writeErr := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		readErr <- err
	}()
	go func() {
		_, err := s.Write(make([]byte, 1<<20)) // blocks once the 256 KiB window is used
		writeErr <- err
	}()
	// Wait until the writer has filled the window (its bytes are on the wire).
	waitFor(t, 10*time.Second, "window to fill", func() bool { return p.server.BytesIn() > 256<<10 })
	s.Reset()
	for _, c := range []chan error{readErr, writeErr} {
		if err := <-c; !errors.Is(err, ErrStreamReset) {
			t.Errorf("blocked op returned %v, want ErrStreamReset", err)
		}
	}
}

// rawClient is a bare yamux client, for sending what mux never would.
func rawClient(t *testing.T, c net.Conn) *yamux.Session {
	t.Helper()
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	ys, err := yamux.Client(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ys.Close() })
	return ys
}

func TestMalformedHeader(t *testing.T) {
	bad := [][]byte{
		{2, 1, 1, 'a'},                 // version
		{1, 9, 1, 'a'},                 // priority
		{1, 1, 0},                      // empty protocol
		{1, 1, 200},                    // too long
		{1, 1, 3, 'a', ' ', 'b'},       // space
		{1, 1, 2, 'a', 0x80},           // not ASCII
		append([]byte{1, 1, 1}, 'a'-1), // '`' is fine: control
	}
	bad = bad[:len(bad)-1]
	for i, h := range bad {
		cc, sc := net.Pipe()
		scfg := testConfig()
		srv, err := NewSession(sc, testPeer(t, 2), testPeer(t, 1), false, scfg, func(string) Handler { return echoHandler })
		if err != nil {
			t.Fatal(err)
		}
		ys := rawClient(t, cc)
		st, err := ys.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write(h)
		if _, err := st.Read(make([]byte, 1)); err != yamux.ErrConnectionReset {
			t.Errorf("header %d %x: raw read %v, want reset", i, h, err)
		}
		if s := srv.Stats(); s.MalformedHeaders != 1 || s.ResetsSent[ResetMalformedHeader] != 1 {
			t.Errorf("header %d: stats %+v", i, s)
		}
		srv.Close()
		ys.Close()
	}
}

func TestHeaderTimeout(t *testing.T) {
	cc, sc := net.Pipe()
	scfg := testConfig()
	scfg.HeaderTimeout = 50 * time.Millisecond
	srv, err := NewSession(sc, testPeer(t, 2), testPeer(t, 1), false, scfg, func(string) Handler { return echoHandler })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ys := rawClient(t, cc)
	st, err := ys.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte{1, 1, 5, 'a'}) // a header cut short
	if _, err := st.Read(make([]byte, 1)); err != yamux.ErrConnectionReset {
		t.Errorf("raw read %v, want reset", err)
	}
	if s := srv.Stats(); s.MalformedHeaders != 1 || srv.NumStreams() != 0 {
		t.Errorf("stats %+v, streams %d", s, srv.NumStreams())
	}
}

// TestMalformedSeenByOpener: a mux opener learns code 3 as ErrMalformedHeader.
func TestMalformedSeenByOpener(t *testing.T) {
	cc, sc := net.Pipe()
	scfg := testConfig()
	scfg.HeaderTimeout = 30 * time.Millisecond
	hold := make(chan struct{})
	defer close(hold)
	p := newPair(t, cc, sc, testConfig(), scfg, nil, routeOf(map[string]Handler{"x": echoHandler}))
	s, err := p.client.OpenStream(context.Background(), "x", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	// Never write or read: the header does not go, and the acceptor times out.
	waitFor(t, 10*time.Second, "header timeout", func() bool { return p.server.Stats().MalformedHeaders == 1 })
	_, err = s.Read(make([]byte, 1))
	if !errors.Is(err, ErrMalformedHeader) || !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read %v, want ErrMalformedHeader", err)
	}
}

func TestCloseWaitsForHandlers(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			var mu sync.Mutex
			var exited int
			var errs []error
			var inHandler sync.WaitGroup
			const n = 20
			inHandler.Add(n)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"block": func(s *Stream) {
					inHandler.Done()
					_, err := s.Read(make([]byte, 1)) // until the session closes
					mu.Lock()
					exited++
					errs = append(errs, err)
					mu.Unlock()
				},
			}))
			var opened []*Stream
			for range n {
				s, err := p.client.OpenStream(context.Background(), "block", PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				s.Write(nil)
				s.sendHeader()
				opened = append(opened, s)
			}
			inHandler.Wait()
			if err := p.server.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			if exited != n {
				t.Errorf("Close returned with %d of %d handlers done", exited, n)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrSessionClosed) {
					t.Errorf("handler read %v, want ErrSessionClosed", err)
				}
			}
			mu.Unlock()
			if p.server.Err() != ErrSessionClosed {
				t.Errorf("Err after local close: %v", p.server.Err())
			}
			p.server.Close() // idempotent
			// The client sees the link go away.
			<-p.client.Done()
			if err := p.client.Err(); err == nil || errors.Is(err, ErrSessionClosed) {
				t.Errorf("client Err %v, want a remote-close reason", err)
			} else if l.name == "pipe" && !errors.Is(err, io.EOF) {
				t.Errorf("client Err %v, want it to wrap io.EOF", err)
			}
			// Its streams' reads say the session is gone, not EOF.
			for _, s := range opened {
				if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrSessionClosed) {
					t.Errorf("client read after session end: %v", err)
					break
				}
			}
			if _, err := p.client.OpenStream(context.Background(), "block", PriorityNormal); !errors.Is(err, ErrSessionClosed) {
				t.Errorf("open after end: %v", err)
			}
		})
	}
}

func TestKeepAliveTimeout(t *testing.T) {
	cc, sc := net.Pipe() // nobody ever reads sc
	defer sc.Close()
	cfg := testConfig()
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 20 * time.Millisecond
	cfg.ConnectionWriteTimeout = 20 * time.Millisecond
	// A pipe nobody reads also blocks the ping's write: keep the link's
	// write timeout (ConnectionWriteTimeout by default) out of the race.
	cfg.WriteTimeout = time.Minute
	s, err := NewSession(cc, testPeer(t, 1), testPeer(t, 2), true, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	if err := s.Err(); !errors.Is(err, ErrKeepAliveTimeout) {
		t.Fatalf("Err %v, want ErrKeepAliveTimeout", err)
	}
}

func TestOpenStreamContext(t *testing.T) {
	cc, sc := net.Pipe() // nobody reads: the SYN cannot be written
	defer sc.Close()
	s, err := NewSession(cc, testPeer(t, 1), testPeer(t, 2), true, testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = s.OpenStream(ctx, "x", PriorityNormal)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open: %v, want deadline exceeded", err)
	}
	if s.NumStreams() != 0 {
		t.Errorf("slot kept after failed open")
	}
	ctx, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s.OpenStream(ctx, "x", PriorityNormal); !errors.Is(err, context.Canceled) {
		t.Fatalf("open with cancelled ctx: %v", err)
	}
}

func TestOpenStreamInvalid(t *testing.T) {
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
	ctx := context.Background()
	if _, err := p.client.OpenStream(ctx, "", PriorityNormal); !errors.Is(err, ErrInvalidProtocol) {
		t.Error(err)
	}
	if _, err := p.client.OpenStream(ctx, "a b", PriorityNormal); !errors.Is(err, ErrInvalidProtocol) {
		t.Error(err)
	}
	if _, err := p.client.OpenStream(ctx, "ok", Priority(4)); !errors.Is(err, ErrInvalidPriority) {
		t.Error(err)
	}
}

func TestDeadline(t *testing.T) {
	cc, sc := net.Pipe()
	hold := make(chan struct{})
	defer close(hold)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{"x": func(*Stream) { <-hold }}))
	s, err := p.client.OpenStream(context.Background(), "x", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = s.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v", err)
	}
}

func TestRemoteCloseEOF(t *testing.T) {
	// A stream the remote closed cleanly reads EOF even after the session
	// has ended, because the FIN was seen.
	cc, sc := net.Pipe()
	done := make(chan struct{})
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"bye": func(s *Stream) { s.Write([]byte("bye")); s.Close(); close(done) },
	}))
	s, err := p.client.OpenStream(context.Background(), "bye", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	if _, err := io.ReadFull(s, b); err != nil {
		t.Fatal(err)
	}
	<-done
	// Wait until the client has seen the FIN, then end the session.
	waitFor(t, 5*time.Second, "FIN", func() bool { return s.finSeen.Load() })
	p.server.Close()
	<-p.client.Done()
	if _, err := s.Read(b); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	for _, c := range []struct {
		field string
		mod   func(*Config)
	}{
		{"MaxStreams", func(c *Config) { c.MaxStreams = -1 }},
		{"HeaderTimeout", func(c *Config) { c.HeaderTimeout = -1 }},
		{"StreamWindow", func(c *Config) { c.StreamWindow = 1000 }},
		{"AcceptBacklog", func(c *Config) { c.AcceptBacklog = -3 }},
		{"ChunkSize", func(c *Config) { c.ChunkSize = 100 }},
		{"ChunkSize", func(c *Config) { c.ChunkSize = 1 << 30 }},
		{"MaxInFlightChunks", func(c *Config) { c.MaxInFlightChunks = -1 }},
		{"MaxInFlightChunks", func(c *Config) { c.MaxInFlightChunks = 1000 }},
		{"PriorityWeights", func(c *Config) { c.PriorityWeights = [NumPriorities]uint32{1, 0, 4, 8} }},
		{"MaxQueuedBytes", func(c *Config) { c.MaxQueuedBytes = -1 }},
		{"MaxQueuedWrites", func(c *Config) { c.MaxQueuedWrites = -1 }},
		{"ReservedStreams", func(c *Config) { c.ReservedStreams = -2 }},
		{"ReservedStreams", func(c *Config) { c.MaxStreams, c.ReservedStreams = 4, 5 }},
	} {
		cfg := testConfig()
		c.mod(&cfg)
		_, err := NewSession(cc, testPeer(t, 1), testPeer(t, 2), true, cfg, nil)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("Config."+c.field)) {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	// The zero Config works (defaults filled in).
	s, err := NewSession(cc, testPeer(t, 1), testPeer(t, 2), true, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestPing(t *testing.T) {
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
	if d, err := p.client.Ping(); err != nil || d <= 0 {
		t.Fatalf("ping %v %v", d, err)
	}
	p.client.Close()
	if _, err := p.client.Ping(); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("ping after close: %v", err)
	}
}

// TestResetAcknowledged: a session answers a coded RST with a plain one,
// so the side that reset (and then could only half-close) frees the
// stream at once rather than after StreamCloseTimeout.
func TestResetAcknowledged(t *testing.T) {
	cfg := testConfig()
	cfg.StreamCloseTimeout = time.Hour
	cc, sc := net.Pipe()
	handlerDone := make(chan error, 1)
	handlerStarted := make(chan struct{}, 1)
	p := newPair(t, cc, sc, cfg, cfg, nil, routeOf(map[string]Handler{
		"reset": func(s *Stream) { s.Reset() },
		"hold": func(s *Stream) {
			handlerStarted <- struct{}{}
			_, err := io.Copy(io.Discard, s)
			handlerDone <- err
		},
	}))
	ctx := context.Background()
	// The acceptor resets: unknown protocol, and Reset in a handler.
	for _, proto := range []string{"unknown", "reset"} {
		s, err := p.client.OpenStream(ctx, proto, PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("req"))
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
			t.Fatalf("%s: read %v", proto, err)
		}
		s.Close()
	}
	waitFor(t, 10*time.Second, "server to free the streams it reset", func() bool { return p.server.ys.NumStreams() == 0 })
	// The opener resets.
	s, err := p.client.OpenStream(ctx, "hold", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("req"))
	<-handlerStarted // a reset before the header is read drops the stream unserved
	s.Reset()
	if err := <-handlerDone; !errors.Is(err, ErrStreamReset) {
		t.Fatalf("handler: %v", err)
	}
	waitFor(t, 10*time.Second, "client to free the stream it reset", func() bool { return p.client.ys.NumStreams() == 0 })
	if got := p.client.Stats().ResetsSent[ResetUnknown]; got != 2 {
		t.Errorf("client sent %d acknowledgements, want 2", got)
	}
	if got := p.server.Stats().ResetsSent[ResetUnknown]; got != 1 {
		t.Errorf("server sent %d acknowledgements, want 1", got)
	}
}
