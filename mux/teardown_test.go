package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

// eventTimeout bounds every wait for an event in these tests; it is a
// failure deadline, never a delay.
const eventTimeout = 10 * time.Second

// await returns what ch yields, failing the test if nothing comes within
// eventTimeout.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(eventTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// echoOnce writes msg to st and reads the echo back.
func echoOnce(t *testing.T, st *Stream, msg string) {
	t.Helper()
	if err := st.SetDeadline(time.Now().Add(eventTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(st, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
	if err := st.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// TestStartCloseInHandler: StartClose called by a handler returns at
// once (Close there would wait for itself), and the session ends while
// the handler still runs; Wait then waits for the handler.
func TestStartCloseInHandler(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			returned := make(chan struct{})
			release := make(chan struct{})
			cause := make(chan error, 1)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"stop": func(s *Stream) {
					s.Session().StartClose()
					s.Session().StartClose() // again: nothing more
					close(returned)
					<-s.Context().Done()
					cause <- context.Cause(s.Context())
					<-release
				},
			}))
			releaseOnce := sync.OnceFunc(func() { close(release) })
			t.Cleanup(releaseOnce) // before newPair's Close, if the test fails

			st, err := p.client.OpenStream(context.Background(), "stop", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			await(t, returned, "StartClose to return in the handler")
			await(t, p.server.Done(), "the session to end with its handler running")
			if err := p.server.Err(); err != ErrSessionClosed {
				t.Errorf("Err %v, want ErrSessionClosed", err)
			}
			if err := await(t, cause, "the stream's context"); !errors.Is(err, ErrSessionClosed) {
				t.Errorf("context cause %v, want ErrSessionClosed", err)
			}
			if n := p.server.Handlers(); n != 1 {
				t.Errorf("Handlers %d while the handler runs, want 1", n)
			}
			if _, err := p.server.OpenStream(context.Background(), "x", PriorityNormal); err != ErrSessionClosed {
				t.Errorf("OpenStream after StartClose: %v, want ErrSessionClosed", err)
			}
			if err := p.server.GoAway(); err != ErrSessionClosed {
				t.Errorf("GoAway after StartClose: %v, want ErrSessionClosed", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := p.server.Wait(ctx); err != context.DeadlineExceeded {
				t.Fatalf("Wait with the handler blocked: %v, want DeadlineExceeded", err)
			}
			releaseOnce()
			ctx, cancel = context.WithTimeout(context.Background(), eventTimeout)
			defer cancel()
			if err := p.server.Wait(ctx); err != nil {
				t.Fatalf("Wait after the handler returned: %v", err)
			}
			if n := p.server.Handlers(); n != 0 {
				t.Errorf("Handlers %d after Wait, want 0", n)
			}
			if err := p.server.Close(); err != nil {
				t.Errorf("Close after StartClose: %v", err)
			}
		})
	}
}

// TestWaitContext: Wait returns ctx.Err() while a handler is blocked on
// something other than its stream, whether or not the session is
// closing, and nil once the handler returns.
func TestWaitContext(t *testing.T) {
	cc, sc := net.Pipe()
	started := make(chan struct{})
	release := make(chan struct{})
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"block": func(s *Stream) {
			close(started)
			<-release // not the stream: the close does not release it
		},
	}))
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)

	st, err := p.client.OpenStream(context.Background(), "block", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	await(t, started, "the handler to start")

	short := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		return p.server.Wait(ctx)
	}
	if err := short(); err != context.DeadlineExceeded {
		t.Fatalf("Wait on an open session: %v, want DeadlineExceeded", err)
	}
	p.server.StartClose()
	await(t, p.server.Done(), "the session to end")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.server.Wait(canceled); err != context.Canceled {
		t.Fatalf("Wait with a cancelled context: %v, want Canceled", err)
	}
	if err := short(); err != context.DeadlineExceeded {
		t.Fatalf("Wait with the handler blocked: %v, want DeadlineExceeded", err)
	}
	if n := p.server.Handlers(); n != 1 {
		t.Errorf("Handlers %d, want 1", n)
	}
	releaseOnce()
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	if err := p.server.Wait(ctx); err != nil {
		t.Fatalf("Wait after release: %v", err)
	}
	if err := p.server.Wait(canceled); err != nil {
		t.Errorf("Wait once done, with a cancelled context: %v, want nil", err)
	}
}

// TestStreamContext: a stream's Context outlives the stream and is
// cancelled when its session ends, by a local close or by the remote's.
func TestStreamContext(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			ctxs := make(chan context.Context, 1)
			p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
				"ctx": func(s *Stream) { ctxs <- s.Context() },
			}))
			st, err := p.client.OpenStream(context.Background(), "ctx", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			sctx := await(t, ctxs, "the handler's context")
			// The handler has returned and the stream ends cleanly.
			if err := st.SetReadDeadline(time.Now().Add(eventTimeout)); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read %v, want EOF", err)
			}
			st.Close()
			cctx := st.Context()
			if sctx.Err() != nil || cctx.Err() != nil {
				t.Fatalf("contexts ended with the stream: %v, %v", sctx.Err(), cctx.Err())
			}

			p.client.Close()
			if cctx.Err() != context.Canceled || context.Cause(cctx) != ErrSessionClosed {
				t.Errorf("after Close: %v, cause %v", cctx.Err(), context.Cause(cctx))
			}
			// The server's session ends because the remote closed the link.
			await(t, sctx.Done(), "the server stream's context")
			if err := context.Cause(sctx); !errors.Is(err, ErrSessionClosed) {
				t.Errorf("server cause %v, want ErrSessionClosed", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
			defer cancel()
			if err := p.server.Wait(ctx); err != nil {
				t.Errorf("Wait on a session the remote ended: %v", err)
			}
		})
	}
}

// TestGoAway: after a GoAway from either side neither side opens
// streams (nor does an open waiting for a slot), while a stream already
// open goes on and ends cleanly.
func TestGoAway(t *testing.T) {
	for _, l := range links {
		for _, sender := range []string{"acceptor", "opener"} {
			t.Run(l.name+"/"+sender, func(t *testing.T) {
				cc, sc := l.pair(t)
				cfg := testConfig()
				cfg.MaxStreams = 1
				cfg.ReservedStreams = -1
				route := routeOf(map[string]Handler{"echo": echoHandler})
				p := newPair(t, cc, sc, cfg, cfg, route, route)
				ctx := context.Background()
				st, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				echoOnce(t, st, "a")
				waiting := make(chan error, 1)
				go func() {
					_, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
					waiting <- err
				}()
				waitFor(t, eventTimeout, "OpenStream to wait for the slot", func() bool { return p.client.SlotWaiters() == 1 })

				from, to := p.server, p.client
				if sender == "opener" {
					from, to = p.client, p.server
				}
				if err := from.GoAway(); err != nil {
					t.Fatal(err)
				}
				if err := from.GoAway(); err != nil {
					t.Fatalf("second GoAway: %v", err)
				}
				// The echo goes out after the GoAway frame, so once it is
				// back the receiver has handled the frame.
				echoOnce(t, st, "b")
				if !from.GoingAway() || from.RemoteGoAway() || to.GoingAway() || !to.RemoteGoAway() {
					t.Errorf("sender GoingAway %v RemoteGoAway %v, receiver GoingAway %v RemoteGoAway %v",
						from.GoingAway(), from.RemoteGoAway(), to.GoingAway(), to.RemoteGoAway())
				}
				if err := await(t, waiting, "the waiting OpenStream"); !errors.Is(err, ErrGoAway) {
					t.Errorf("waiting OpenStream: %v, want ErrGoAway", err)
				}
				for _, s := range []*Session{p.client, p.server} {
					if _, err := s.OpenStream(ctx, "echo", PriorityCritical); !errors.Is(err, ErrGoAway) {
						t.Errorf("OpenStream after GoAway: %v, want ErrGoAway", err)
					}
					if n := s.NumStreams(); n != 1 {
						t.Errorf("%d streams hold a slot, want 1", n)
					}
				}

				echoOnce(t, st, "c")
				st.Close()
				if err := st.SetReadDeadline(time.Now().Add(eventTimeout)); err != nil {
					t.Fatal(err)
				}
				if rest, err := io.ReadAll(st); err != nil || len(rest) != 0 {
					t.Fatalf("end of stream: %q, %v", rest, err)
				}
				waitFor(t, eventTimeout, "both sides to free the slot", func() bool {
					return p.client.NumStreams() == 0 && p.server.NumStreams() == 0
				})
				for _, s := range []*Session{p.client, p.server} {
					if ss := s.Stats(); ss.ResetsSent != ss.ResetsReceived || ss.ResetsSent != ([NumResetCodes]uint64{}) {
						t.Errorf("resets sent %v received %v, want none", ss.ResetsSent, ss.ResetsReceived)
					}
				}
				if p.client.Err() != nil || p.server.Err() != nil {
					t.Errorf("sessions ended: %v, %v", p.client.Err(), p.server.Err())
				}
			})
		}
	}
}

// goAwayGate holds the first GoAway frame written to it until open is
// called.
type goAwayGate struct {
	net.Conn
	writing chan struct{} // closed when the GoAway frame is being written
	gate    chan struct{}
	once    sync.Once
	open    func()
}

func newGoAwayGate(c net.Conn) *goAwayGate {
	g := &goAwayGate{Conn: c, writing: make(chan struct{}), gate: make(chan struct{})}
	g.open = sync.OnceFunc(func() { close(g.gate) })
	return g
}

func (g *goAwayGate) Write(b []byte) (int, error) {
	if len(b) == frameHeaderLen && b[0] == frameVersion && b[1] == typeGoAway {
		g.once.Do(func() { close(g.writing) })
		<-g.gate
	}
	return g.Conn.Write(b)
}

// TestGoAwayRefusesCrossingStream: a stream opened before the opener has
// seen the remote's GoAway is refused unserved with code 5, and the
// opener's error wraps ErrGoAway.
func TestGoAwayRefusesCrossingStream(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			g := newGoAwayGate(sc)
			p := newPair(t, cc, g, testConfig(), testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))
			t.Cleanup(g.open) // before newPair's Close, if the test fails

			sent := make(chan error, 1)
			go func() { sent <- p.server.GoAway() }()
			// The server now refuses new streams, and the client does not know.
			await(t, g.writing, "the GoAway frame")
			st, err := p.client.OpenStream(context.Background(), "echo", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			g.open()
			if err := await(t, sent, "GoAway to return"); err != nil {
				t.Fatal(err)
			}
			if err := st.SetReadDeadline(time.Now().Add(eventTimeout)); err != nil {
				t.Fatal(err)
			}
			_, err = st.Read(make([]byte, 1))
			var re *ResetError
			if !errors.Is(err, ErrGoAway) || !errors.Is(err, ErrStreamReset) || !errors.As(err, &re) || re.Code != ResetGoingAway || !re.Remote {
				t.Fatalf("read %v, want a remote reset with code ResetGoingAway", err)
			}
			if !p.client.RemoteGoAway() {
				t.Error("client has not seen the GoAway that came before the reset")
			}
			st.Close()
			if n := p.client.NumStreams(); n != 0 {
				t.Errorf("client holds %d slots, want 0", n)
			}
			ss, cs := p.server.Stats(), p.client.Stats()
			if ss.ResetsSent[ResetGoingAway] != 1 || ss.StreamsAccepted != 0 || p.server.Handlers() != 0 || p.server.NumStreams() != 0 {
				t.Errorf("server: stats %+v, handlers %d, streams %d", ss, p.server.Handlers(), p.server.NumStreams())
			}
			// Nothing to acknowledge: the server kept no state for the stream.
			if cs.ResetsReceived[ResetGoingAway] != 1 || cs.ResetsSent != ([NumResetCodes]uint64{}) {
				t.Errorf("client: stats %+v", cs)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestHandlerPanic: a handler's panic resets its stream (the opener gets
// ErrHandlerFailed, not a hang), is logged, counted and reported, and
// the session goes on serving.
func TestHandlerPanic(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			type report struct {
				remote   peer.ID
				protocol string
				value    any
			}
			reports := make(chan report, 1)
			var logs syncBuffer
			scfg := testConfig()
			scfg.Logger = zerolog.New(&logs).Level(zerolog.ErrorLevel)
			scfg.OnHandlerPanic = func(remote peer.ID, protocol string, value any) {
				reports <- report{remote, protocol, value}
			}
			p := newPair(t, cc, sc, testConfig(), scfg, nil, routeOf(map[string]Handler{
				"boom": func(s *Stream) { panic("boom") },
				"echo": echoHandler,
			}))
			ctx := context.Background()
			st, err := p.client.OpenStream(ctx, "boom", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := st.SetReadDeadline(time.Now().Add(eventTimeout)); err != nil {
				t.Fatal(err)
			}
			_, err = st.Read(make([]byte, 1))
			var re *ResetError
			if !errors.Is(err, ErrHandlerFailed) || !errors.Is(err, ErrStreamReset) || !errors.As(err, &re) || re.Code != ResetHandlerFailed {
				t.Fatalf("opener read %v, want a reset with code ResetHandlerFailed", err)
			}
			st.Close()

			r := await(t, reports, "OnHandlerPanic")
			if r.remote != p.client.LocalPeer() || r.protocol != "boom" || r.value != "boom" {
				t.Errorf("OnHandlerPanic(%v, %q, %v)", r.remote, r.protocol, r.value)
			}
			if n := p.server.Stats().HandlerPanics; n != 1 {
				t.Errorf("HandlerPanics %d, want 1", n)
			}
			log := logs.String()
			for _, want := range []string{`"level":"error"`, "stream handler panicked", `"panic":"boom"`, `"protocol":"boom"`, "TestHandlerPanic"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}

			// The session still serves.
			st, err = p.client.OpenStream(ctx, "echo", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			echoOnce(t, st, "still here")
			st.Close()
			waitFor(t, eventTimeout, "the server's handlers to return", func() bool {
				return p.server.NumStreams() == 0 && p.server.Handlers() == 0
			})
			if err := p.server.Err(); err != nil {
				t.Errorf("server ended: %v", err)
			}
		})
	}
}

// TestHandlerCalledFromServe: the handler's caller is (*Session).serve,
// which the connection manager looks for on the stack to tell a call
// made from inside a handler.
func TestHandlerCalledFromServe(t *testing.T) {
	cc, sc := net.Pipe()
	caller := make(chan string, 1)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"who": func(s *Stream) {
			pc := make([]uintptr, 1)
			runtime.Callers(2, pc) // skip runtime.Callers and this function
			f, _ := runtime.CallersFrames(pc).Next()
			caller <- f.Function
		},
	}))
	st, err := p.client.OpenStream(context.Background(), "who", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	const want = "github.com/peerlink/peerlink/mux.(*Session).serve"
	if got := await(t, caller, "the handler"); got != want {
		t.Errorf("handler called by %s, want %s", got, want)
	}
}
