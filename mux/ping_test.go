package mux

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// swallowConn passes everything through until swallow is set; from then
// on every Write reports success and sends nothing, like a link whose far
// end has gone silent (the remote never sees our pings, so never answers).
// Reads still reach the underlying conn, so Close unblocks them.
type swallowConn struct {
	net.Conn
	swallow   atomic.Bool
	swallowed chan struct{} // gets a value (if there is room) per swallowed Write
}

func newSwallowConn(c net.Conn) *swallowConn {
	return &swallowConn{Conn: c, swallowed: make(chan struct{}, 1)}
}

func (c *swallowConn) Write(b []byte) (int, error) {
	if c.swallow.Load() {
		select {
		case c.swallowed <- struct{}{}:
		default:
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func TestPingContextRTT(t *testing.T) {
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
	inBefore := p.client.BytesIn()
	before := time.Now()
	d, err := p.client.PingContext(context.Background())
	if err != nil || d <= 0 {
		t.Fatalf("ping: %v %v", d, err)
	}
	if p.client.BytesIn() == inBefore {
		t.Fatal("no bytes counted for the answer")
	}
	if lr := p.client.LastRead(); lr.Before(before) || lr.After(time.Now()) {
		t.Fatalf("LastRead %v: want the answer's arrival, after %v and not in the future", lr, before)
	}

	// With a deadline that leaves time, the answer still wins.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d, err := p.server.PingContext(ctx); err != nil || d <= 0 {
		t.Fatalf("server ping: %v %v", d, err)
	}

	// Concurrent pings all get an answer (they may share one ping).
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			if _, err := p.client.PingContext(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPingContextDeadline(t *testing.T) {
	cc, sc := net.Pipe()
	sw := newSwallowConn(cc)
	p := newPair(t, sw, sc, testConfig(), testConfig(), nil, nil)
	if _, err := p.client.PingContext(context.Background()); err != nil {
		t.Fatalf("ping before the switch: %v", err)
	}
	sw.swallow.Store(true)
	lastRead := p.client.LastRead()

	const timeout = 50 * time.Millisecond
	start := time.Now() // before the deadline is set, so took >= timeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := p.client.PingContext(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ping to a silent peer: %v, want context.DeadlineExceeded and os.ErrDeadlineExceeded", err)
	}
	// Not yamux's ConnectionWriteTimeout (10s): the context's deadline.
	if took < timeout || took > 5*time.Second {
		t.Fatalf("ping returned after %v, want about %v", took, timeout)
	}
	if got := p.client.LastRead(); !got.Equal(lastRead) {
		t.Fatalf("LastRead moved from %v to %v with nothing arriving", lastRead, got)
	}
	if p.client.Err() != nil {
		t.Fatalf("a timed-out ping ended the session: %v", p.client.Err())
	}

	// A cancelled context: its error (and cause) wrapped, no deadline.
	why := errors.New("shutting down")
	cctx, ccancel := context.WithCancelCause(context.Background())
	ccancel(why)
	_, err = p.client.PingContext(cctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, why) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ping with a cancelled ctx: %v", err)
	}
}

// TestPingCloseInFlight: Close while pings wait for an answer that will
// never come returns at once (not after ConnectionWriteTimeout), the pings
// fail with ErrSessionClosed, and no goroutine is left behind.
func TestPingCloseInFlight(t *testing.T) {
	cc, sc := net.Pipe()
	sw := newSwallowConn(cc)
	a, b := testPeer(t, 1), testPeer(t, 2)
	cfg := testConfig()
	cfg.ConnectionWriteTimeout = time.Minute
	client, err := NewSession(sw, a, b, true, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := NewSession(sc, b, a, false, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw.swallow.Store(true)

	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := client.PingContext(context.Background())
			errs <- err
		}()
	}
	<-sw.swallowed // the ping went out (into the void)

	start := time.Now()
	client.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v with a ping in flight", took)
	}
	for range n {
		if err := <-errs; !errors.Is(err, ErrSessionClosed) {
			t.Errorf("ping at close: %v, want ErrSessionClosed", err)
		}
	}
	if _, err := client.PingContext(context.Background()); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("ping after close: %v, want ErrSessionClosed", err)
	}
	server.Close()
	goleak.VerifyNone(t)
}

// TestPingRemoteEnd: a ping on a session the remote has closed fails with
// the session's closed error.
func TestPingRemoteEnd(t *testing.T) {
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, nil)
	p.server.Close()
	<-p.client.Done()
	if _, err := p.client.PingContext(context.Background()); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("ping after the remote closed: %v", err)
	}
}

// TestPingShared: pings that overlap share one yamux ping, so a stream of
// short-deadline pings to a silent peer leaves at most one goroutine.
//
// It runs in a synctest bubble. In real time a 1 ms deadline can pass
// before PingContext even looks at its context (a preemption on a loaded
// machine, or the race detector, between WithTimeout and the call): the
// call then returns the deadline error at once without starting a ping,
// as it should, and the first ping left none in flight ("ping 0: in
// flight 0x0, want the first one 0x0"). In the bubble the deadline
// passes only once every goroutine is blocked: each call has started or
// joined the ping, which has gone out (into the void), by then.
func TestPingShared(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cc, sc := net.Pipe()
		sw := newSwallowConn(cc)
		cfg := testConfig()
		cfg.ConnectionWriteTimeout = time.Minute
		p := newPair(t, sw, sc, cfg, cfg, nil, nil)
		sw.swallow.Store(true)
		var first *pingCall
		for i := range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, err := p.client.PingContext(ctx)
			cancel()
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ping %d: %v", i, err)
			}
			p.client.mu.Lock()
			c, running := p.client.ping, p.client.running
			p.client.mu.Unlock()
			if i == 0 {
				first = c
			}
			if c == nil || c != first {
				t.Fatalf("ping %d: in flight %p, want the first one %p", i, c, first)
			}
			// The accept loop and the one ping goroutine.
			if running != 2 {
				t.Fatalf("ping %d: %d session goroutines, want 2", i, running)
			}
		}
		select {
		case <-sw.swallowed:
		default:
			t.Fatal("no ping was written")
		}
	})
}

// A probe that joins a ping about to time out is not failed by that
// ping's timeout, which began before it came: it pings again, and its own
// deadline decides. (A health probe landing in the instant a previous
// probe's ping times out would otherwise fail at once, or not, by which
// of two timers at one instant runs first.)
func TestPingJoinedLateOutlivesTheOldTimeout(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cc, sc := net.Pipe()
		sw := newSwallowConn(cc)
		cfg := testConfig()
		cfg.ConnectionWriteTimeout = 10 * time.Second
		p := newPair(t, sw, sc, cfg, cfg, nil, nil)
		sw.swallow.Store(true)
		first := make(chan error, 1)
		go func() {
			_, err := p.client.PingContext(context.Background())
			first <- err
		}()
		time.Sleep(9 * time.Second)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := p.client.PingContext(ctx)
		if waited := time.Since(start); waited != 5*time.Second || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("joined at 9 s: %v after %v, want its own 5 s deadline to end it", err, waited)
		}
		if err := <-first; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the first ping: %v, want its timeout", err)
		}
	})
}
