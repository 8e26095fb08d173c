package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallConn is a link whose far end can stop draining it. Until stall is
// called it passes every Write through; from then on a Write takes at
// most allow more bytes (0 by default: none) and then blocks, as a write
// to a socket whose buffer is full does, until resume, Close, or its
// write deadline: SetWriteDeadline is honoured as a socket honours it (a
// deadline that passes while a Write is blocked fails that Write with
// os.ErrDeadlineExceeded and the count of bytes it took, and a Write
// started past the deadline fails at once). Reads pass through.
type stallConn struct {
	net.Conn

	mu       sync.Mutex
	stalled  bool
	allow    int
	closed   bool
	deadline time.Time
	blocked  int           // Writes blocked now
	timedOut bool          // a Write has failed with a timeout
	after    int           // Writes begun after one failed with a timeout
	change   chan struct{} // closed and replaced whenever the above change
}

func newStallConn(c net.Conn) *stallConn {
	return &stallConn{Conn: c, change: make(chan struct{})}
}

// changedLocked wakes everyone watching c.
func (c *stallConn) changedLocked() {
	close(c.change)
	c.change = make(chan struct{})
}

// stall makes Writes block, after allow more bytes.
func (c *stallConn) stall(allow int) {
	c.mu.Lock()
	c.stalled, c.allow = true, allow
	c.changedLocked()
	c.mu.Unlock()
}

func (c *stallConn) resume() {
	c.mu.Lock()
	c.stalled = false
	c.changedLocked()
	c.mu.Unlock()
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.timedOut {
		c.after++
	}
	n := 0
	for {
		switch {
		case c.closed:
			c.mu.Unlock()
			return n, net.ErrClosed
		case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
			c.timedOut = true
			c.changedLocked()
			c.mu.Unlock()
			return n, os.ErrDeadlineExceeded
		case !c.stalled:
			c.mu.Unlock()
			m, err := c.Conn.Write(b[n:])
			return n + m, err
		case c.allow > 0:
			k := min(c.allow, len(b)-n)
			c.allow -= k
			c.mu.Unlock()
			m, err := c.Conn.Write(b[n : n+k])
			n += m
			if err != nil || n == len(b) {
				return n, err
			}
			c.mu.Lock()
			continue
		}
		var timer *time.Timer
		var timeout <-chan time.Time
		if !c.deadline.IsZero() {
			timer = time.NewTimer(time.Until(c.deadline))
			timeout = timer.C
		}
		c.blocked++
		c.changedLocked()
		ch := c.change
		c.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		c.mu.Lock()
		c.blocked--
	}
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.changedLocked()
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	if err := c.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *stallConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.changedLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// await waits until cond holds on c's state, failing the test after
// eventTimeout.
func (c *stallConn) await(t *testing.T, what string, cond func(c *stallConn) bool) {
	t.Helper()
	deadline := time.NewTimer(eventTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch := cond(c), c.change
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// writesAfterTimeout returns how many Writes reached c after one of them
// had failed with a timeout.
func (c *stallConn) writesAfterTimeout() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.after
}

// writeResult is what a Write run in a goroutine returned, and when.
type writeResult struct {
	n    int
	err  error
	took time.Duration // from goWrite's call
	at   time.Time     // when it returned
}

// goWrite runs write in a goroutine; its result arrives on the channel.
func goWrite(write func() (int, error)) <-chan writeResult {
	ch := make(chan writeResult, 1)
	t0 := time.Now()
	go func() {
		n, err := write()
		at := time.Now()
		ch <- writeResult{n, err, at.Sub(t0), at}
	}()
	return ch
}

// quiet keeps a session from leaving yamux close timers behind. yamux
// starts a StreamCloseTimeout timer for every stream closed before its
// remote's FIN, and does not stop it when the session ends; firing later,
// during a synctest bubble of another test, it trades timers with the
// bubble through yamux's global timer pool (fatal, or a bubble that never
// advances). An hour outlasts the test binary.
func quiet(c Config) Config {
	c.StreamCloseTimeout = time.Hour
	return c
}

// schedState reads the client's scheduler under its lock.
func schedState[T any](s *Session, f func(sc *scheduler) T) T {
	s.sched.mu.Lock()
	defer s.sched.mu.Unlock()
	return f(s.sched)
}

// TestStalledStreamBlocksNobody: a stream whose remote has stopped
// reading it has 8 MiB to send, twice the whole queue's MaxQueuedBytes.
// Once its window is used it waits for window, counting no bytes in the
// queue, and a normal 4-byte Write on another stream of the session goes
// at once: it is not held back (or, with FailFast, refused with
// ErrBackpressure) for room the stalled Write could not use anyway.
func TestStalledStreamBlocksNobody(t *testing.T) {
	for _, l := range links {
		for _, failFast := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/failfast=%v", l.name, failFast), func(t *testing.T) {
				cc, sc := l.pair(t)
				hold := make(chan struct{})
				release := sync.OnceFunc(func() { close(hold) })
				defer release() // on failure too: Close waits for the handler
				cfg := quiet(testConfig())
				cfg.FailFast = failFast
				got := make(chan []byte, 1)
				p := newPair(t, cc, sc, cfg, quiet(testConfig()), nil, routeOf(map[string]Handler{
					"stuck": func(s *Stream) {
						<-hold // reads nothing until released, then all
						io.Copy(io.Discard, s)
					},
					"small": func(s *Stream) {
						b, _ := io.ReadAll(s)
						got <- b
					},
				}))
				stuck, err := p.client.OpenStream(context.Background(), "stuck", PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				bulk := goWrite(func() (int, error) { return stuck.Write(make([]byte, 8<<20)) })
				waitFor(t, eventTimeout, "the stalled stream to use its window", func() bool {
					return schedState(p.client, func(*scheduler) bool { return stuck.fl.state == flowParked })
				})
				qs := p.client.QueueStats()[PriorityNormal]
				if qs.Depth != 1 || qs.QueuedBytes != 0 {
					t.Errorf("queue with the stalled Write waiting for window: %+v; want depth 1, no bytes", qs)
				}

				small, err := p.client.OpenStream(context.Background(), "small", PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				small.SetWriteDeadline(time.Now().Add(2 * time.Second)) // a failure bound
				t0 := time.Now()
				n, err := small.Write([]byte("vote"))
				took := time.Since(t0)
				t.Logf("4-byte write beside a stalled 8 MiB one: %v", took)
				if err != nil || n != 4 {
					t.Fatalf("4-byte write: %d, %v", n, err)
				}
				if took > 100*time.Millisecond {
					t.Errorf("4-byte write took %v, want < 100ms", took)
				}
				small.Close()
				if b := await(t, got, "the small stream's bytes"); string(b) != "vote" {
					t.Errorf("remote read %q", b)
				}
				select {
				case r := <-bulk:
					t.Fatalf("stalled write returned %d, %v", r.n, r.err)
				default:
				}

				// The remote reads again: the stalled Write's window, and so its
				// charge, come back, and it completes.
				release()
				if r := await(t, bulk, "the stalled write"); r.err != nil || r.n != 8<<20 {
					t.Fatalf("stalled write, once read: %d, %v", r.n, r.err)
				}
				for prio, q := range p.client.QueueStats() {
					if q.Depth != 0 || q.QueuedBytes != 0 || q.Refusals != 0 {
						t.Errorf("%v: queue after all writes returned: %+v", Priority(prio), q)
					}
				}
			})
		}
	}
}

// TestChargeFollowsWindow: a Write counts, in the queue, what its
// stream's window lets it send: the whole Write while the window covers
// it, the window when the Write is larger, nothing once the remote stops
// reading, and the window again when the remote returns some.
func TestChargeFollowsWindow(t *testing.T) {
	cc, sc := net.Pipe()
	stall := newStallConn(cc)
	release := make(chan int)
	p := newPair(t, stall, sc, quiet(testConfig()), quiet(testConfig()), nil, routeOf(map[string]Handler{
		"paced": func(s *Stream) {
			for n := range release { // read n bytes each time asked
				if _, err := io.ReadFull(s, make([]byte, n)); err != nil {
					return
				}
			}
		},
	}))
	st, err := p.client.OpenStream(context.Background(), "paced", PriorityHigh)
	if err != nil {
		t.Fatal(err)
	}
	st.Write(nil) // the header
	queued := func() int64 { return p.client.QueueStats()[PriorityHigh].QueuedBytes }

	// The link takes nothing: the Write waits for it, charged in full
	// (less than a window).
	stall.stall(0)
	small := goWrite(func() (int, error) { return st.Write(make([]byte, 100_000)) })
	stall.await(t, "the write to block on the link", func(c *stallConn) bool { return c.blocked == 1 })
	if q := queued(); q != 100_000 {
		t.Errorf("write of 100000 bytes on a stalled link: charged %d", q)
	}
	stall.resume()
	if r := await(t, small, "the write"); r.err != nil {
		t.Fatal(r.err)
	}
	if q := queued(); q != 0 {
		t.Errorf("charge %d after the write returned", q)
	}

	// Larger than the window: charged the window left, then nothing once
	// the window is used.
	window := schedState(p.client, func(*scheduler) int64 { return st.fl.window })
	stall.stall(0)
	big := goWrite(func() (int, error) { return st.Write(make([]byte, 1<<20)) })
	stall.await(t, "the write to block on the link", func(c *stallConn) bool { return c.blocked == 1 })
	if q := queued(); q != window {
		t.Errorf("write of 1 MiB with %d bytes of window: charged %d", window, q)
	}
	stall.resume()
	waitFor(t, eventTimeout, "the write to use its window", func() bool {
		return schedState(p.client, func(*scheduler) bool { return st.fl.state == flowParked })
	})
	if q := queued(); q != 0 {
		t.Errorf("write waiting for window: charged %d, want 0", q)
	}
	// The remote reads 192 KiB; yamux returns window once half of it is
	// read, and the charge follows the window (the link takes nothing).
	stall.stall(0)
	release <- 192 << 10
	waitFor(t, eventTimeout, "window to come back", func() bool { return queued() > 0 })
	w := schedState(p.client, func(*scheduler) int64 { return st.fl.held + st.fl.window })
	if q := queued(); q != w {
		t.Errorf("after window came back: charged %d, window (and turns held) %d", q, w)
	}
	stall.resume()
	close(release)
	st.Reset()
	<-big
	if q := queued(); q != 0 {
		t.Errorf("charge %d after the write returned", q)
	}
}

// stalledPair starts a session pair whose client writes through a
// stallConn; the server serves sink, stuck (reads nothing until hold is
// closed) and collect (sends what it read on got, at EOF).
func stalledPair(t *testing.T, ccfg Config, hold chan struct{}, got chan<- string) (pair, *stallConn) {
	t.Helper()
	cc, sc := tcpPair(t)
	stall := newStallConn(cc)
	p := newPair(t, stall, sc, quiet(ccfg), quiet(testConfig()), nil, routeOf(map[string]Handler{
		"sink": sinkHandler,
		"stuck": func(s *Stream) {
			<-hold
			io.Copy(io.Discard, s)
		},
		"collect": func(s *Stream) {
			b, _ := io.ReadAll(s)
			got <- string(b)
		},
	}))
	return p, stall
}

// openWritten opens a stream and writes to it once, so that its header
// and its first frames are out of the way.
func openWritten(t *testing.T, s *Session, proto string, prio Priority) *Stream {
	t.Helper()
	st, err := s.OpenStream(context.Background(), proto, prio)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestWriteDeadlineBoundsLinkWrite: a Write with a 300 ms deadline (or
// WriteContext with a 300 ms context) returns in about 300 ms with a
// timeout when the link has stopped draining, and the session goes on
// (until WriteTimeout, 10s). Blocked in its own write to the link, it
// returns with its frames counted as written: they are committed, and
// reach the remote once the link drains. Waiting behind another writer
// for the link or for a turn, it returns having touched nothing.
func TestWriteDeadlineBoundsLinkWrite(t *testing.T) {
	const budget = 300 * time.Millisecond
	for _, c := range []struct {
		name    string
		ctx     bool
		blocker int // bytes another writer has blocked on the link first; 0: none
	}{
		{"own-write/deadline", false, 0},
		{"own-write/context", true, 0},
		{"behind-lock/deadline", false, 4},
		{"behind-lock/context", true, 4},
		{"behind-turn/deadline", false, 1 << 20},
		{"behind-turn/context", true, 1 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			hold := make(chan struct{})
			defer close(hold)
			got := make(chan string, 1)
			p, stall := stalledPair(t, testConfig(), hold, got)
			st := openWritten(t, p.client, "collect", PriorityCritical)
			var other *Stream
			if c.blocker > 0 {
				other = openWritten(t, p.client, "sink", PriorityLow)
			}
			stall.stall(0)
			var blocked <-chan writeResult
			if c.blocker > 0 {
				blocked = goWrite(func() (int, error) { return other.Write(make([]byte, c.blocker)) })
				stall.await(t, "the other write to block on the link", func(c *stallConn) bool { return c.blocked == 1 })
			}
			out := p.client.BytesOut()
			res := goWrite(func() (int, error) {
				if c.ctx {
					ctx, cancel := context.WithTimeout(context.Background(), budget)
					defer cancel()
					return st.WriteContext(ctx, []byte("vote"))
				}
				st.SetWriteDeadline(time.Now().Add(budget))
				return st.Write([]byte("vote"))
			})
			var r writeResult
			select {
			case r = <-res:
			case <-time.After(3 * time.Second):
				t.Fatalf("Write with a %v deadline still blocked after 3s", budget)
			}
			t.Logf("write with a %v deadline on a link that stopped draining returned after %v: %d, %v", budget, r.took, r.n, r.err)
			var ne net.Error
			if !errors.Is(r.err, os.ErrDeadlineExceeded) || !errors.As(r.err, &ne) || !ne.Timeout() {
				t.Errorf("write: %v; want a timeout", r.err)
			}
			if c.ctx && !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("WriteContext: %v; want context.DeadlineExceeded", r.err)
			}
			if r.took > 500*time.Millisecond || r.took < budget-10*time.Millisecond {
				t.Errorf("write returned after %v, want about %v (< 500ms)", r.took, budget)
			}
			if errors.Is(r.err, ErrWriteTimeout) || errors.Is(r.err, ErrSessionClosed) {
				t.Errorf("write: %v; want a timeout alone", r.err)
			}
			if err := p.client.Err(); err != nil {
				t.Errorf("session ended: %v", err)
			}
			if got := p.client.BytesOut(); got != out {
				t.Errorf("%d bytes went to the link meanwhile", got-out)
			}
			want := "hellovoteagain"
			inflight := schedState(p.client, func(sc *scheduler) int { return sc.inflight })
			if c.blocker == 0 {
				// Its frames were on their way: they count, they go, and
				// their turn lasts until they have gone.
				if r.n != 4 {
					t.Errorf("write cut short in its link write: n = %d, want 4 (committed)", r.n)
				}
				if inflight != 1 {
					t.Errorf("%d turns in flight with the write's frames waiting for the link, want 1", inflight)
				}
			} else if r.n != 0 {
				t.Errorf("write that waited: n = %d, want 0", r.n)
				want = "helloagain"
			} else {
				want = "helloagain"
			}
			stall.resume()
			if blocked != nil {
				if r := await(t, blocked, "the other write"); r.err != nil {
					t.Errorf("other write, once the link drains: %v", r.err)
				}
			}
			st.SetWriteDeadline(time.Time{})
			if _, err := st.Write([]byte("again")); err != nil {
				t.Errorf("write after the timeout: %v", err)
			}
			if n := schedState(p.client, func(sc *scheduler) int { return sc.inflight }); n != 0 {
				t.Errorf("%d turns in flight after every write returned", n)
			}
			st.Close()
			if b := await(t, got, "the remote's bytes"); b != want {
				t.Errorf("remote read %q, want %q", b, want)
			}
		})
	}
}

// TestDetachedWriteEndsAtWriteTimeout: a Write whose deadline cut short
// its wait for its own link write returns at that deadline; the write
// itself goes on, bounded by WriteTimeout, which ends the session if the
// link still takes nothing.
func TestDetachedWriteEndsAtWriteTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = time.Second
	hold := make(chan struct{})
	defer close(hold)
	p, stall := stalledPair(t, cfg, hold, nil)
	st := openWritten(t, p.client, "sink", PriorityCritical)
	stall.stall(0)
	t0 := time.Now()
	st.SetWriteDeadline(t0.Add(200 * time.Millisecond))
	n, err := st.Write([]byte("vote"))
	took := time.Since(t0)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 4 || took > 500*time.Millisecond {
		t.Errorf("write: %d, %v after %v; want 4 and a timeout after 200ms", n, err, took)
	}
	if err := p.client.Err(); err != nil {
		t.Fatalf("session ended with the write: %v", err)
	}
	// Another Write waits behind the committed frames, for the link.
	st.SetWriteDeadline(time.Time{})
	other := goWrite(func() (int, error) { return st.Write([]byte("more")) })
	select {
	case <-p.client.Done():
	case <-time.After(eventTimeout):
		t.Fatal("session still up with a link that took nothing")
	}
	ended := time.Since(t0)
	t.Logf("write returned after %v; session ended after %v: %v", took, ended, p.client.Err())
	if err := p.client.Err(); !errors.Is(err, ErrWriteTimeout) {
		t.Errorf("session: %v, want ErrWriteTimeout", err)
	}
	if ended < cfg.WriteTimeout*15/16 || ended > cfg.WriteTimeout+500*time.Millisecond {
		t.Errorf("session ended after %v, want about WriteTimeout (%v)", ended, cfg.WriteTimeout)
	}
	if r := await(t, other, "the other write"); !errors.Is(r.err, ErrWriteTimeout) {
		t.Errorf("write waiting behind it: %v, want ErrWriteTimeout", r.err)
	}
	if n := stall.writesAfterTimeout(); n != 0 {
		t.Errorf("%d writes reached the link after the one that timed out", n)
	}
}

// TestWriteTimeoutEndsSession: a link that takes nothing for WriteTimeout
// (200 ms here) ends the session with ErrWriteTimeout, and every Write
// waiting on it returns at once with an error wrapping it, long before
// its own deadline: the one blocked on the link, one waiting for the link
// (it holds a turn), one for a turn, one for queue room and one for its
// remote's window. Nothing is written after the write that timed out.
func TestWriteTimeoutEndsSession(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	cfg := testConfig()
	cfg.WriteTimeout = writeTimeout
	cfg.MaxQueuedWrites = 5 // low and normal: 4
	hold := make(chan struct{})
	defer close(hold)
	p, stall := stalledPair(t, cfg, hold, nil)
	s := p.client

	// A Write waiting for window, counting one Write in the queue.
	stuck, err := s.OpenStream(context.Background(), "stuck", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	stuck.SetWriteDeadline(time.Now().Add(time.Minute))
	windowW := goWrite(func() (int, error) { return stuck.Write(make([]byte, 1<<20)) })
	waitFor(t, eventTimeout, "the stuck stream to use its window", func() bool {
		return schedState(s, func(*scheduler) bool { return stuck.fl.state == flowParked })
	})
	streams := make([]*Stream, 4)
	for i := range streams {
		streams[i] = openWritten(t, s, "sink", PriorityNormal)
		streams[i].SetWriteDeadline(time.Now().Add(time.Minute))
	}

	stall.stall(0)
	t0 := time.Now()
	linkW := goWrite(func() (int, error) { return streams[0].Write([]byte("a")) })
	stall.await(t, "a write to block on the link", func(c *stallConn) bool { return c.blocked == 1 })
	lockW := goWrite(func() (int, error) { return streams[1].Write([]byte("b")) })
	waitFor(t, eventTimeout, "a writer to hold the second turn", func() bool {
		return schedState(s, func(sc *scheduler) bool { return sc.inflight == 2 })
	})
	turnW := goWrite(func() (int, error) { return streams[2].Write([]byte("c")) })
	waitFor(t, eventTimeout, "a writer to wait for a turn", func() bool {
		return schedState(s, func(sc *scheduler) bool { return !sc.ready[PriorityNormal].empty() })
	})
	roomW := goWrite(func() (int, error) { return streams[3].Write([]byte("d")) })
	waitFor(t, eventTimeout, "a writer to wait for queue room", func() bool {
		return schedState(s, func(sc *scheduler) bool { return len(sc.rooms[PriorityNormal]) == 1 })
	})
	if d := time.Since(t0); d >= writeTimeout {
		t.Fatalf("setting up took %v, past WriteTimeout", d)
	}

	select {
	case <-s.Done():
	case <-time.After(eventTimeout):
		t.Fatal("session still up with a link that took nothing")
	}
	endedAt := time.Now()
	ended := endedAt.Sub(t0)
	err = s.Err()
	t.Logf("session ended %v after the link stopped draining: %v", ended, err)
	if !errors.Is(err, ErrWriteTimeout) {
		t.Errorf("session error %v, want ErrWriteTimeout", err)
	}
	if msg := err.Error(); !strings.Contains(msg, testPeer(t, 2).ShortString()) || !strings.Contains(msg, "WriteTimeout 200ms") {
		t.Errorf("session error %q names neither the remote nor the timeout", msg)
	}
	if ended < writeTimeout*15/16 || ended > writeTimeout+300*time.Millisecond {
		t.Errorf("session ended %v after the link stopped draining, want about %v", ended, writeTimeout)
	}
	for _, w := range []struct {
		name string
		ch   <-chan writeResult
	}{{"on the link", linkW}, {"for the link", lockW}, {"for a turn", turnW}, {"for room", roomW}, {"for window", windowW}} {
		r := await(t, w.ch, "the write waiting "+w.name)
		late := r.at.Sub(endedAt)
		t.Logf("write waiting %s: returned %v after the session ended: %v", w.name, max(0, late), r.err)
		if !errors.Is(r.err, ErrWriteTimeout) || !errors.Is(r.err, ErrSessionClosed) {
			t.Errorf("write waiting %s: %v; want ErrWriteTimeout and ErrSessionClosed", w.name, r.err)
		}
		if errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Errorf("write waiting %s: %v passes for its own timeout", w.name, r.err)
		}
		if late > 250*time.Millisecond {
			t.Errorf("write waiting %s returned %v after the session ended", w.name, late)
		}
	}
	if n := stall.writesAfterTimeout(); n != 0 {
		t.Errorf("%d writes reached the link after the one that timed out", n)
	}
}

// TestWriteTimeoutPartialFrame: a write to the link that times out having
// taken part of a frame ends the session, and nothing follows the part.
func TestWriteTimeoutPartialFrame(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = 200 * time.Millisecond
	hold := make(chan struct{})
	defer close(hold)
	p, stall := stalledPair(t, cfg, hold, nil)
	st := openWritten(t, p.client, "sink", PriorityNormal)
	stall.stall(1000) // a part of the next frame
	r := await(t, goWrite(func() (int, error) { return st.Write(make([]byte, 10_000)) }), "the write")
	if !errors.Is(r.err, ErrWriteTimeout) || r.n != 0 {
		t.Errorf("write cut short mid-frame: %d, %v", r.n, r.err)
	}
	<-p.client.Done()
	if err := p.client.Err(); !errors.Is(err, ErrWriteTimeout) {
		t.Errorf("session: %v", err)
	}
	// The remote saw a truncated frame, then nothing: its session stays
	// up until the link closes under it.
	if n := stall.writesAfterTimeout(); n != 0 {
		t.Errorf("%d writes reached the link after the one that timed out", n)
	}
}

// TestWriteTimeoutYamuxFrame: a frame yamux writes itself (here GoAway)
// is bounded by WriteTimeout as well.
func TestWriteTimeoutYamuxFrame(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = 200 * time.Millisecond
	hold := make(chan struct{})
	defer close(hold)
	p, stall := stalledPair(t, cfg, hold, nil)
	stall.stall(0)
	t0 := time.Now()
	res := goWrite(func() (int, error) { return 0, p.client.GoAway() })
	select {
	case <-p.client.Done():
	case <-time.After(eventTimeout):
		t.Fatal("session still up")
	}
	t.Logf("session ended %v after GoAway: %v", time.Since(t0), p.client.Err())
	if err := p.client.Err(); !errors.Is(err, ErrWriteTimeout) {
		t.Errorf("session: %v, want ErrWriteTimeout", err)
	}
	if r := await(t, res, "GoAway"); r.err == nil {
		t.Error("GoAway on a link that took nothing succeeded")
	}
	if n := stall.writesAfterTimeout(); n != 0 {
		t.Errorf("%d writes reached the link after the one that timed out", n)
	}
}

// TestWriteTimeoutConfig: WriteTimeout defaults to ConnectionWriteTimeout.
func TestWriteTimeoutConfig(t *testing.T) {
	for _, c := range []struct{ cfg, want time.Duration }{{0, DefaultConnectionWriteTimeout}, {time.Second, time.Second}} {
		got, err := Config{WriteTimeout: c.cfg}.normalize()
		if err != nil || got.WriteTimeout != c.want {
			t.Errorf("WriteTimeout %v: normalized to %v, %v; want %v", c.cfg, got.WriteTimeout, err, c.want)
		}
	}
	got, _ := Config{ConnectionWriteTimeout: 3 * time.Second}.normalize()
	if got.WriteTimeout != 3*time.Second {
		t.Errorf("WriteTimeout %v with ConnectionWriteTimeout 3s", got.WriteTimeout)
	}
	if err := (Config{WriteTimeout: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "Config.WriteTimeout") {
		t.Errorf("negative WriteTimeout: %v", err)
	}
}

// deadlineRecorder is a link that records every Write and every write
// deadline set on it; each Write takes delay (of virtual time, in a
// synctest bubble).
type deadlineRecorder struct {
	net.Conn // nil: not used
	delay    time.Duration
	writes   [][]byte
	sets     []time.Time
}

func (r *deadlineRecorder) Write(b []byte) (int, error) {
	time.Sleep(r.delay)
	r.writes = append(r.writes, append([]byte(nil), b...))
	return len(b), nil
}

func (r *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	r.sets = append(r.sets, t)
	return nil
}

func (r *deadlineRecorder) RemoteAddr() net.Addr { return nil }

// TestArmDeadline: the write deadlines the frame conn sets on the link:
// now + WriteTimeout, set again only once it has moved by more than a
// sixteenth of it; a stream's own deadline never reaches the link.
func TestArmDeadline(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		const wt = 16 * time.Second
		rec := &deadlineRecorder{}
		fc := newFrameConn(rec, nil)
		fc.setWrites(wt, "remote", nil)
		ping := frame(2, 1, 0, 9)
		write := func(dl time.Time) {
			t.Helper()
			fc.lock()
			_, err := fc.writeDataDeadline(1, nil, []byte("x"), fullChunk, dl)
			fc.unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
		last := func() time.Time { return rec.sets[len(rec.sets)-1] }
		t0 := time.Now()

		fc.Write(ping)
		if len(rec.sets) != 1 || !last().Equal(t0.Add(wt)) {
			t.Fatalf("first write: deadlines set %v, want now+%v", rec.sets, wt)
		}
		time.Sleep(wt / 16) // not more than the slack: left as it is
		fc.Write(ping)
		write(time.Now().Add(time.Second))
		if len(rec.sets) != 1 {
			t.Errorf("deadline set again within the slack: %v", rec.sets)
		}
		time.Sleep(time.Millisecond) // past the slack
		fc.Write(ping)
		if len(rec.sets) != 2 || !last().Equal(time.Now().Add(wt)) {
			t.Errorf("past the slack: deadlines %v, want now+%v", rec.sets, wt)
		}
		time.Sleep(wt)
		write(time.Now().Add(time.Second))
		if len(rec.sets) != 3 || !last().Equal(time.Now().Add(wt)) {
			t.Errorf("a stream write: deadlines %v, want now+%v", rec.sets, wt)
		}
	})
}

// TestDeadlineBetweenFrames: a stream's deadline that passes while its
// frames are being written stops them at the next frame boundary, with a
// timeout, and the link goes on: nothing of a frame is left half
// written.
func TestDeadlineBetweenFrames(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		rec := &deadlineRecorder{delay: 10 * time.Millisecond}
		fc := newFrameConn(rec, nil)
		fc.setWrites(time.Second, "remote", nil)
		body := make([]byte, 8*fullChunk) // two link writes of four frames
		fc.lock()
		n, err := fc.writeDataDeadline(3, nil, body, fullChunk, time.Now().Add(10*time.Millisecond))
		fc.unlock()
		if !errors.Is(err, os.ErrDeadlineExceeded) || n != 4*fullChunk {
			t.Errorf("write past its deadline: %d, %v; want the first four frames and a timeout", n, err)
		}
		if fc.failErr != nil {
			t.Errorf("link failed: %v", fc.failErr)
		}
		if len(rec.writes) != 1 {
			t.Errorf("%d link writes, want 1", len(rec.writes))
		}
		if _, err := fc.Write(frame(2, 1, 0, 9)); err != nil {
			t.Errorf("the link after: %v", err)
		}
	})
}

// BenchmarkWriteDeadline: one stream, as BenchmarkStreamThroughput's mux
// case, with no write deadline, with one later than WriteTimeout (the
// frames go from the writer's goroutine, as without one) and with one
// sooner (they go from a goroutine of their own, copied, so that the
// Write can return at its deadline).
func BenchmarkWriteDeadline(b *testing.B) {
	for _, l := range throughputLinks {
		for _, c := range []struct {
			name string
			dl   time.Duration
		}{{"none", 0}, {"after-WriteTimeout", time.Minute}, {"before-WriteTimeout", time.Second}} {
			b.Run(l.name+"/"+c.name, func(b *testing.B) {
				cc, sc := l.pair(b)
				got := make(chan int64, 1)
				p := newPair(b, cc, sc, benchConfig(), benchConfig(), nil, routeOf(map[string]Handler{
					"sink": func(s *Stream) {
						n, _ := io.Copy(io.Discard, s)
						got <- n
					},
				}))
				st, err := p.client.OpenStream(context.Background(), "sink", PriorityNormal)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, l.write)
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if c.dl > 0 {
						st.SetWriteDeadline(time.Now().Add(c.dl))
					}
					if _, err := st.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				st.Close()
				n := <-got
				b.StopTimer()
				if n != int64(b.N)*int64(len(buf)) {
					b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*int64(len(buf)))
				}
			})
		}
	}
}
