package peerlink_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// fastBackoff makes reconnects quick enough for tests.
func fastBackoff(c *peerlink.Config) {
	c.Backoff = peerlink.Backoff{
		InitialInterval:     20 * time.Millisecond,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxInterval:         200 * time.Millisecond,
		MaxElapsedTime:      2 * time.Second,
	}
}

// reservedAddr returns a 127.0.0.1 address nothing listens on now, for a
// node that will be started (and restarted) there later.
func reservedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startAt starts a manager with identity id listening on addr.
func startAt(t testing.TB, id *peer.Identity, addr string, mods ...func(*peerlink.Config)) *peerlink.ConnectionManager {
	t.Helper()
	return newManager(t, append([]func(*peerlink.Config){func(c *peerlink.Config) {
		c.Identity = id
		c.ListenAddrs = []string{addr}
	}}, mods...)...)
}

func newIdentity(t testing.TB) *peer.Identity {
	t.Helper()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// dialCounter is a gater that counts dials and can hold them until
// released.
type dialCounter struct {
	dials   atomic.Int32
	mu      sync.Mutex
	hold    chan struct{} // dials wait on it while non-nil
	entered chan struct{} // gets a value as each dial enters
	times   []time.Time
}

func newDialCounter() *dialCounter { return &dialCounter{entered: make(chan struct{}, 1024)} }

func (d *dialCounter) gater() transport.Gater {
	return transport.GaterFuncs{Dial: func(peer.ID, string) error {
		d.dials.Add(1)
		d.mu.Lock()
		d.times = append(d.times, time.Now())
		hold := d.hold
		d.mu.Unlock()
		d.entered <- struct{}{}
		if hold != nil {
			<-hold
		}
		return nil
	}}
}

func (d *dialCounter) holdDials() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hold = make(chan struct{})
	return d.hold
}

func (d *dialCounter) waitDial(t testing.TB) {
	t.Helper()
	select {
	case <-d.entered:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a dial")
	}
}

func TestBreakerOpensFailsFastHalfOpensCloses(t *testing.T) {
	idB, addr := newIdentity(t), reservedAddr(t)
	counter := newDialCounter()
	a := newManager(t, func(c *peerlink.Config) {
		c.Gater = counter.gater()
		c.Breaker = breaker.Settings{FailureThreshold: 3, OpenTimeout: 300 * time.Millisecond}
	})
	sub := a.Subscribe(0)
	b := peer.AddrInfo{ID: idB.ID(), Addrs: []string{addr}}

	for i := 1; i <= 3; i++ {
		err := a.Connect(ctxT(t), b)
		if err == nil || errors.Is(err, peerlink.ErrCircuitOpen) {
			t.Fatalf("dial %d to a closed port: err = %v, want a dial error", i, err)
		}
		if want := map[bool]breaker.State{true: breaker.StateOpen, false: breaker.StateClosed}[i == 3]; a.BreakerState(b.ID) != want {
			t.Fatalf("after %d failures: circuit %v, want %v", i, a.BreakerState(b.ID), want)
		}
	}
	ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventCircuit })
	if ev.Peer != b.ID || ev.From != breaker.StateClosed || ev.To != breaker.StateOpen {
		t.Fatalf("circuit event = %v, want closed → open", ev)
	}

	// Open: fails at once, without dialing.
	dialsBefore := counter.dials.Load()
	err := a.Connect(ctxT(t), b)
	var open *breaker.OpenError
	if !errors.Is(err, peerlink.ErrCircuitOpen) || !errors.As(err, &open) {
		t.Fatalf("Connect while open: %v, want ErrCircuitOpen", err)
	}
	if counter.dials.Load() != dialsBefore {
		t.Fatal("an open circuit let a dial through")
	}
	if _, err := a.OpenStream(ctxT(t), b.ID, echoProto, mux.PriorityHigh); !errors.Is(err, peerlink.ErrCircuitOpen) {
		t.Fatalf("OpenStream while open: %v, want ErrCircuitOpen", err)
	}

	// The peer comes back; once the open timeout has passed (the time the
	// circuit itself reports) one trial goes through and closes it.
	startAt(t, idB, addr)
	<-time.After(time.Until(open.Until))
	if err := a.Connect(ctxT(t), b); err != nil {
		t.Fatalf("trial dial after the open timeout: %v", err)
	}
	ev = waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventCircuit })
	if ev.From != breaker.StateOpen || ev.To != breaker.StateHalfOpen {
		t.Fatalf("circuit event = %v, want open → half-open", ev)
	}
	ev = waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventCircuit })
	if ev.From != breaker.StateHalfOpen || ev.To != breaker.StateClosed {
		t.Fatalf("circuit event = %v, want half-open → closed", ev)
	}
}

func TestBreakerIgnoresRefusalsThatSayNothingAboutThePeer(t *testing.T) {
	b := newManager(t)
	errNo := errors.New("not today")
	a := newManager(t, func(c *peerlink.Config) {
		c.Breaker = breaker.Settings{FailureThreshold: 2}
		c.Gater = transport.GaterFuncs{Dial: func(peer.ID, string) error { return errNo }}
	})
	for range 5 {
		if err := a.Connect(ctxT(t), b.AddrInfo()); !errors.Is(err, transport.ErrGated) {
			t.Fatalf("err = %v, want ErrGated", err)
		}
	}
	if s := a.BreakerState(b.ID()); s != breaker.StateClosed {
		t.Fatalf("circuit %v after local gater refusals, want closed", s)
	}
}

func TestRetryConnect(t *testing.T) {
	t.Run("retries until the peer is up", func(t *testing.T) {
		idB, addr := newIdentity(t), reservedAddr(t)
		counter := newDialCounter()
		a := newManager(t, fastBackoff, func(c *peerlink.Config) { c.Gater = counter.gater() })
		if err := a.AddPeer(peer.AddrInfo{ID: idB.ID(), Addrs: []string{addr}}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.RetryConnect(ctxT(t), idB.ID()) }()
		counter.waitDial(t)
		counter.waitDial(t) // two failed dials, then the peer appears
		startAt(t, idB, addr)
		if err := <-done; err != nil {
			t.Fatalf("RetryConnect: %v", err)
		}
		if a.Status(idB.ID()) != peer.StatusConnected {
			t.Fatalf("Status = %v", a.Status(idB.ID()))
		}
	})
	t.Run("wrong peer is permanent", func(t *testing.T) {
		b := newManager(t)
		counter := newDialCounter()
		a := newManager(t, fastBackoff, func(c *peerlink.Config) { c.Gater = counter.gater() })
		impostor := newIdentity(t)
		if err := a.AddPeer(peer.AddrInfo{ID: impostor.ID(), Addrs: b.Addrs()}); err != nil {
			t.Fatal(err)
		}
		err := a.RetryConnect(ctxT(t), impostor.ID())
		if !errors.Is(err, transport.ErrPeerIDMismatch) {
			t.Fatalf("err = %v, want ErrPeerIDMismatch", err)
		}
		if n := counter.dials.Load(); n != 1 {
			t.Fatalf("%d dials for a permanent error, want 1", n)
		}
	})
	t.Run("gives up after MaxElapsedTime", func(t *testing.T) {
		a := newManager(t, fastBackoff, func(c *peerlink.Config) {
			c.Backoff.MaxElapsedTime = 300 * time.Millisecond
			c.Breaker.FailureThreshold = 1000
		})
		id := newIdentity(t)
		if err := a.AddPeer(peer.AddrInfo{ID: id.ID(), Addrs: []string{reservedAddr(t)}}); err != nil {
			t.Fatal(err)
		}
		if err := a.RetryConnect(ctxT(t), id.ID()); err == nil {
			t.Fatal("RetryConnect to a dead address succeeded")
		}
	})
	t.Run("bounded by the caller's context", func(t *testing.T) {
		a := newManager(t, fastBackoff, func(c *peerlink.Config) {
			c.Backoff.MaxElapsedTime = time.Hour
			c.Breaker.FailureThreshold = 1000
		})
		id := newIdentity(t)
		if err := a.AddPeer(peer.AddrInfo{ID: id.ID(), Addrs: []string{reservedAddr(t)}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := a.RetryConnect(ctx, id.ID()); err == nil {
			t.Fatal("RetryConnect outlived its context without a link")
		}
	})
}

func TestPersistentPeerComesBackAfterRestart(t *testing.T) {
	idB, addr := newIdentity(t), reservedAddr(t)
	b := startAt(t, idB, addr)
	withEcho(b, t)
	a := newManager(t, fastBackoff, func(c *peerlink.Config) {
		c.PersistentPeers = []peer.AddrInfo{{ID: idB.ID(), Addrs: []string{addr}}}
	})
	sub := a.Subscribe(0)
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected && e.Peer == idB.ID() })
	roundTrip(t, a, idB.ID(), []byte("before"))

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	restarted := time.Now()
	b2 := startAt(t, idB, addr)
	withEcho(b2, t)
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected && e.Peer == idB.ID() })
	// Attempts settle at MaxInterval with ±50% jitter: the restarted peer
	// is redialed within 1.5 × MaxInterval, plus the dial itself.
	if took, bound := time.Since(restarted), 300*time.Millisecond+5*time.Second; took > bound {
		t.Errorf("back after %v, want within %v", took, bound)
	}
	roundTrip(t, a, idB.ID(), []byte("after"))
}

func TestLocalDisconnectDoesNotReconnect(t *testing.T) {
	b := newManager(t)
	counter := newDialCounter()
	a := newManager(t, fastBackoff, func(c *peerlink.Config) { c.Gater = counter.gater() })
	sub := a.Subscribe(0)
	if err := a.AddPersistentPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	// Prove the negative with a later event: a connect of our own is the
	// next dial, and the first since the persistent one.
	if err := a.Connect(ctxT(t), b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if n := counter.dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2 (the persistent one and ours): a local Disconnect was redialed", n)
	}
}

// TestOpenStreamsShareTheReconnect: 20 OpenStream calls arriving while a
// persistent peer's reconnect attempt is in flight wait for that attempt
// and share its outcome.
func TestOpenStreamsShareTheReconnect(t *testing.T) {
	const callers = 20
	run := func(t *testing.T, peerUp bool) []error {
		idB, addr := newIdentity(t), reservedAddr(t)
		b := startAt(t, idB, addr)
		withEcho(b, t)
		subB := b.Subscribe(0)
		counter := newDialCounter()
		a := newManager(t, fastBackoff, func(c *peerlink.Config) {
			c.Gater = counter.gater()
			c.HandshakeTimeout = 500 * time.Millisecond
			// The attempt after the shared one comes ≥150 ms later: well
			// after the callers have their answer.
			c.Backoff.InitialInterval = 300 * time.Millisecond
			c.Backoff.MaxInterval = time.Second
		})
		sub := a.Subscribe(0)
		if err := a.AddPersistentPeer(peer.AddrInfo{ID: idB.ID(), Addrs: []string{addr}}); err != nil {
			t.Fatal(err)
		}
		counter.waitDial(t)
		waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
		waitEvent(t, subB, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })

		release := counter.holdDials()
		if peerUp {
			// The remote drops the link but stays up.
			if err := b.Disconnect(a.ID()); err != nil {
				t.Fatal(err)
			}
		} else {
			// The remote is gone; a silent listener holds its address, so
			// the attempt fails only at the handshake timeout.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			silent, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			go func() {
				for {
					c, err := silent.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()
		}
		counter.waitDial(t) // the reconnect attempt is in flight, held
		before := counter.dials.Load()

		errs := make([]error, callers)
		var started, wg sync.WaitGroup
		started.Add(callers)
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started.Done()
				s, err := a.OpenStream(ctxT(t), idB.ID(), echoProto, mux.PriorityNormal)
				if err == nil {
					_, err = s.Write([]byte("x"))
					s.Close()
				}
				errs[i] = err
			}()
		}
		started.Wait()
		close(release)
		wg.Wait()
		if n := counter.dials.Load(); n != before {
			t.Errorf("%d more dials while %d OpenStream calls waited on the reconnect, want 0", n-before, callers)
		}
		return errs
	}
	t.Run("attempt succeeds", func(t *testing.T) {
		for i, err := range run(t, true) {
			if err != nil {
				t.Errorf("OpenStream %d: %v", i, err)
			}
		}
	})
	t.Run("attempt fails", func(t *testing.T) {
		for i, err := range run(t, false) {
			if !errors.Is(err, transport.ErrHandshakeTimeout) {
				t.Errorf("OpenStream %d: %v, want the attempt's handshake timeout", i, err)
			}
		}
	})
}

func TestReconnectsAreSpreadByJitter(t *testing.T) {
	const peers = 16
	counter := newDialCounter()
	hub := newManager(t, func(c *peerlink.Config) {
		c.Gater = counter.gater()
		c.Backoff = peerlink.Backoff{InitialInterval: 400 * time.Millisecond, RandomizationFactor: 0.5}
	})
	sub := hub.Subscribe(0)
	var remotes []*peerlink.ConnectionManager
	var remoteSubs []*peerlink.Subscription
	for range peers {
		r := newManager(t)
		remotes = append(remotes, r)
		remoteSubs = append(remoteSubs, r.Subscribe(0))
		if err := hub.AddPersistentPeer(r.AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range peers {
		waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
		waitEvent(t, remoteSubs[i], func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	}
	counter.mu.Lock()
	counter.times = nil
	counter.mu.Unlock()
	for _, r := range remotes { // every link drops at once
		if err := r.Disconnect(hub.ID()); err != nil {
			t.Fatal(err)
		}
	}
	for range peers {
		waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	}
	counter.mu.Lock()
	times := append([]time.Time(nil), counter.times...)
	counter.mu.Unlock()
	if len(times) < peers {
		t.Fatalf("%d redials, want %d", len(times), peers)
	}
	first, last := times[0], times[0]
	for _, tm := range times {
		if tm.Before(first) {
			first = tm
		}
		if tm.After(last) {
			last = tm
		}
	}
	// 16 draws from [0, 400ms): the chance they all fall within 100 ms of
	// each other is below 1e-8.
	if spread := last.Sub(first); spread < 100*time.Millisecond {
		t.Errorf("%d redials spread over %v: a burst", len(times), spread)
	}
}

func TestWriterSeesRemoteDeathAndNothingIsSilentlyLost(t *testing.T) {
	a, b := newManager(t), newManager(t)
	received := make(chan []byte, 1)
	enough := make(chan struct{})
	var once sync.Once
	if err := b.SetStreamHandler("/sink/1", func(s *mux.Stream) {
		var got []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if len(got) >= 1<<20 {
				once.Do(func() { close(enough) })
			}
			if err != nil {
				received <- got
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), "/sink/1", mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetWriteDeadline(time.Now().Add(waitTimeout))

	// attempted is every byte handed to Write, the failing call's too: a
	// Write cut short by the link dying may have put more on the wire
	// than the count it returns, never different bytes.
	var attempted []byte
	writeErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 16<<10)
		for i := 0; ; i++ {
			for j := range chunk {
				chunk[j] = byte(i*7 + j)
			}
			attempted = append(attempted, chunk...)
			if _, err := s.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	<-enough
	if err := b.Close(); err != nil { // the remote goes away mid-transfer
		t.Fatal(err)
	}
	if err := <-writeErr; err == nil {
		t.Fatal("writer got no error")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("writer only timed out: %v", err)
	}
	got := <-received
	if len(got) > len(attempted) || sha256.Sum256(got) != sha256.Sum256(attempted[:len(got)]) {
		t.Fatalf("the remote received %d bytes that are not a prefix of the %d written", len(got), len(attempted))
	}
	// Writing on after the error fails too: the stream never pretends.
	if _, err := s.Write([]byte("more")); err == nil {
		t.Fatal("Write after the link died succeeded")
	}
}

func TestCloseWithReconnectsInFlightLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := peerlink.DefaultConfig()
	fastBackoff(&cfg)
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	var peers []peer.AddrInfo
	for range 5 {
		peers = append(peers, peer.AddrInfo{ID: newIdentity(t).ID(), Addrs: []string{reservedAddr(t)}})
	}
	cfg.PersistentPeers = peers
	a, err := peerlink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub := a.Subscribe(0)
	// Let the loops fail a few times first.
	for range 3 {
		if _, err := a.OpenStream(ctxT(t), peers[0].ID, echoProto, mux.PriorityLow); err == nil {
			t.Fatal("stream to nobody")
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.C {
	}
}

// The circuit's open timeout runs on Config.Clock: under a fake clock the
// circuit half-opens when that clock has moved on, not the real one.
func TestBreakerFollowsTheManagersClock(t *testing.T) {
	idB, addr := newIdentity(t), reservedAddr(t)
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.Breaker = breaker.Settings{FailureThreshold: 2, OpenTimeout: time.Hour}
	})
	b := peer.AddrInfo{ID: idB.ID(), Addrs: []string{addr}}
	for i := 1; i <= 2; i++ {
		if err := a.Connect(ctxT(t), b); err == nil || errors.Is(err, peerlink.ErrCircuitOpen) {
			t.Fatalf("dial %d to a closed port: err = %v, want a dial error", i, err)
		}
	}
	err := a.Connect(ctxT(t), b)
	var open *breaker.OpenError
	if !errors.As(err, &open) {
		t.Fatalf("Connect after 2 failures: %v, want ErrCircuitOpen", err)
	}
	if want := fake.Now().Add(time.Hour); !open.Until.Equal(want) {
		t.Fatalf("open until %v, want %v (the manager's clock plus OpenTimeout)", open.Until, want)
	}
	startAt(t, idB, addr)
	fake.Advance(time.Hour)
	if got := a.BreakerState(b.ID); got != breaker.StateHalfOpen {
		t.Fatalf("circuit %v an hour later on the manager's clock, want half-open", got)
	}
	if err := a.Connect(ctxT(t), b); err != nil {
		t.Fatalf("trial dial an hour later on the manager's clock: %v", err)
	}
	if got := a.BreakerState(b.ID); got != breaker.StateClosed {
		t.Fatalf("circuit %v after a good trial, want closed", got)
	}
}
