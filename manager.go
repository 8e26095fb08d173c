package peerlink

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/score"
	"github.com/peerlink/peerlink/transport"
)

// ConnectionManager keeps one authenticated, multiplexed link per peer and
// opens streams over it. It is safe for concurrent use, and every method
// may be called from inside a stream handler.
//
// Goroutines: the manager owns one accept loop per listener, one goroutine
// per dial in flight, the health monitor, the record pruner, one reconnect
// loop per persistent peer without a link, and one owner per open link,
// which closes the link's session and then waits for its handlers (each
// yamux session adds its own goroutines, which mux owns). Close stops
// them all and waits for them.
//
// The root package is split by job: records.go (the address book and the
// per-peer record), dial.go, admission.go, links.go (link registry and
// lifecycle), streams.go, introspection.go, resilience.go (breakers,
// retries, persistent peers) and healthcheck.go.
type ConnectionManager struct {
	cfg      Config
	id       peer.ID
	log      zerolog.Logger
	clock    clock.Clock
	rand     *clock.Rand
	tr       transport.Transport
	muxCfg   mux.Config
	scoreCfg score.Config
	histCfg  peerstore.HistoryConfig // shared by every record's History
	stats    nodeStats
	epoch    time.Time // creation, on the manager's clock (see sinceEpoch)
	balancer balancer.Strategy
	peers    *peer.Table[*record]
	events   eventBus
	breakers *breaker.Registry
	nextLink atomic.Uint64 // LinkID of the last link registered

	handlers sync.Map // protocol string → mux.Handler
	panics   atomic.Uint64

	// ctx is the parent of every dial and reconnect loop; Close (and
	// Shutdown) cancel it.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // guards listeners, and orders wg.Add with Close
	listeners []transport.Listener
	closed    atomic.Bool // set under mu: Close has begun
	draining  atomic.Bool // Shutdown has begun: no new links or streams
	wg        sync.WaitGroup
	linkWG    sync.WaitGroup // link owners, which wait for handlers

	conns   atomic.Int64 // links counted against the limits, both directions
	inbound atomic.Int64 // of them, links the remote dialed
	pending *pendingAdmissions
	live    liveRecords // the records with a link, for SelectBest

	warm warmer    // connection warming (warm.go)
	trim trimState // limits at run time, trimming, tags (trim.go, limits.go, protect.go)
}

// New returns a manager listening on cfg.ListenAddrs.
func New(cfg Config) (*ConnectionManager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Identity == nil {
		if cfg.Identity, err = peer.GenerateIdentity(); err != nil {
			return nil, err
		}
	}
	m := &ConnectionManager{
		cfg:   cfg,
		id:    cfg.Identity.ID(),
		clock: cfg.Clock,
		rand:  clock.NewRand(cfg.Rand),
		peers: peer.NewTable[*record](0),
	}
	m.pending = newPendingAdmissions(cfg.HandshakeTimeout)
	m.log = cfg.Logger.With().Str("component", "peerlink").Str("self", m.id.ShortString()).Logger()
	m.muxCfg = cfg.muxConfig(m.log)
	m.muxCfg.OnHandlerPanic = func(peer.ID, string, any) { m.panics.Add(1) }
	m.muxCfg.Node = cfg.nodeLimits()
	m.muxCfg.Totals = &m.stats.streams
	m.scoreCfg = cfg.Score
	m.epoch = m.clock.Now()
	m.histCfg = cfg.History
	m.balancer = cfg.Balancer
	if m.balancer == nil {
		m.balancer = balancer.NewP2C(balancer.P2COptions{Seed: m.rand.Uint64()})
	}
	if err := m.newBreakers(); err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.tr, err = cfg.Transport(transport.Config{
		Identity:             cfg.Identity,
		Network:              cfg.Network,
		HandshakeTimeout:     cfg.HandshakeTimeout,
		MaxPendingHandshakes: cfg.MaxPendingHandshakes,
		MaxPendingPerIP:      cfg.MaxPendingPerIP,
		MaxPendingPerSubnet:  cfg.MaxPendingPerSubnet,
		FirstByteTimeout:     cfg.FirstByteTimeout,
		MaxInboundPerIP:      cfg.MaxInboundPerIP,
		LimitExempt:          cfg.LimitExempt,
		NotSentLowat:         cfg.NotSentLowat,
		Gater:                &admission{m: m, user: cfg.Gater},
		Logger:               m.log,
	})
	if err != nil {
		m.cancel()
		if errors.Is(err, transport.ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return nil, fmt.Errorf("peerlink: transport: %w", err)
	}
	m.initLimits()
	for _, addr := range cfg.ListenAddrs {
		if err := m.Listen(addr); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	if !cfg.DisableHealthMonitor {
		if err := m.startHealthMonitor(); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	m.spawn(m.pruneLoop)
	m.spawn(m.upkeep)
	if err := m.startWarming(); err != nil {
		_ = m.Close()
		return nil, err
	}
	for _, info := range cfg.PersistentPeers {
		if err := m.AddPersistentPeer(info); err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("%w: PersistentPeers: %w", ErrInvalidConfig, err)
		}
	}
	return m, nil
}

// ID returns the node's own peer ID.
func (m *ConnectionManager) ID() peer.ID { return m.id }

// Listen starts accepting links on addr (for TCP, "host:port"; port 0
// picks a free one, which Addrs then reports).
func (m *ConnectionManager) Listen(addr string) error {
	if err := m.usable(); err != nil {
		return err
	}
	ln, err := m.tr.Listen(addr)
	if err != nil {
		return fmt.Errorf("peerlink: listen %s: %w", addr, err)
	}
	m.mu.Lock()
	if m.closed.Load() || m.draining.Load() {
		m.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	m.listeners = append(m.listeners, ln)
	m.wg.Add(1)
	m.mu.Unlock()
	m.log.Info().Str("addr", ln.Addr().String()).Msg("listening")
	go func() {
		defer m.wg.Done()
		m.acceptLoop(ln)
	}()
	return nil
}

// Addrs returns the addresses the manager listens on.
func (m *ConnectionManager) Addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.listeners))
	for i, ln := range m.listeners {
		out[i] = ln.Addr().String()
	}
	return out
}

// AddrInfo returns the node's ID and listen addresses, which is what
// another node needs to Connect to it.
func (m *ConnectionManager) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: m.id, Addrs: m.Addrs()}
}

// usable returns ErrClosed after Close and ErrShuttingDown during
// Shutdown.
func (m *ConnectionManager) usable() error {
	switch {
	case m.closed.Load():
		return ErrClosed
	case m.draining.Load():
		return ErrShuttingDown
	}
	return nil
}

// spawn runs f in a goroutine the manager owns, unless Close has begun.
func (m *ConnectionManager) spawn(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// closeListeners closes the listeners (once) and returns their errors.
func (m *ConnectionManager) closeListeners() error {
	m.mu.Lock()
	listeners := m.listeners
	m.listeners = nil
	m.mu.Unlock()
	var errs []error
	for _, ln := range listeners {
		if err := ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes the listeners and starts closing every link at once, stops
// every goroutine the manager started and waits for them, handlers
// included, then closes all subscriptions. A link whose socket has
// stopped draining takes a bounded moment to close, and all links close
// together, so Close does not grow with the number of stalled links.
// Other methods then return ErrClosed. Calling Close again waits again
// for handlers still running (after a Shutdown whose context ended, say).
//
// Called from inside a stream handler, Close does not wait for handlers
// (it would wait for its own caller): they have been told to stop, as
// their streams are closed and their Context cancelled.
func (m *ConnectionManager) Close() error {
	err := m.startClose()
	if !calledFromHandler() {
		m.linkWG.Wait()
	}
	return err
}

// startClose does Close's work but for waiting on handlers, once: it
// closes the listeners, detaches and starts closing every link, and waits
// for every goroutine the manager owns except the link owners.
func (m *ConnectionManager) startClose() error {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		return nil
	}
	m.closed.Store(true)
	m.mu.Unlock()

	m.cancel()
	err := m.closeListeners()
	// A link registering after this pass sees closed and closes itself.
	for _, r := range m.peers.Range {
		m.closeRecordLink(r, ReasonShutdown, nil)
	}
	m.wg.Wait()
	m.events.close()
	m.log.Debug().Msg("closed")
	return err
}

// Shutdown closes the manager gracefully, as net/http's Server.Shutdown
// does: it stops accepting links, refuses new streams with
// ErrShuttingDown, tells every peer that the link is going away (a yamux
// GoAway: the remote's OpenStream on it fails with ErrGoAway, and a peer
// that keeps this node as a persistent peer reconnects later with its
// backoff), then waits for the streams in flight to finish. When they
// have, it closes everything as Close does. When ctx ends first, it
// closes every link at once, returns ctx's error without waiting for
// handlers that ignore their stream's Context (a later Close waits for
// them).
//
// Called from a stream handler, Shutdown waits for that handler too, so
// it returns only when ctx ends.
func (m *ConnectionManager) Shutdown(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.mu.Lock()
	m.draining.Store(true)
	m.mu.Unlock()
	m.log.Debug().Msg("shutting down")
	lnErr := m.closeListeners()
	// Stop reconnect loops and dials: nothing new is wanted.
	m.cancel()
	// A GoAway waits until its frame is written, which a stalled socket
	// holds up for the session's write timeout: send them all at once,
	// and wait for them only once the links are closed (which ends them).
	var goAways sync.WaitGroup
	defer goAways.Wait()
	for _, l := range m.liveLinks() {
		goAways.Go(func() {
			if err := l.sess.GoAway(); err != nil {
				m.log.Debug().Err(err).Str("peer", l.peer.ShortString()).Msg("go away")
			}
		})
	}
	// Poll as net/http does: links report no event when their last stream
	// ends, and the poll ends within a few milliseconds of it.
	wait := time.Millisecond
	timer := m.clock.NewTimer(wait)
	defer timer.Stop()
	for !m.quiet() {
		select {
		case <-timer.C():
			wait = min(2*wait, 50*time.Millisecond)
			timer.Reset(wait)
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lnErr, m.startClose())
		}
	}
	return errors.Join(lnErr, m.Close())
}

// quiet reports whether no link carries a stream or runs a handler.
func (m *ConnectionManager) quiet() bool {
	for _, l := range m.liveLinks() {
		if l.sess.NumStreams() > 0 || l.sess.Handlers() > 0 {
			return false
		}
	}
	return true
}

// handlerFrame is the function from which mux runs a stream handler.
const handlerFrame = "github.com/peerlink/peerlink/mux.(*Session).serve"

// calledFromHandler reports whether the calling goroutine runs a stream
// handler, so that Close does not wait for its own caller. It costs a
// stack walk, paid only by Close.
func calledFromHandler() bool {
	pcs := make([]uintptr, 256)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if f.Function == handlerFrame {
			return true
		}
		if !more {
			return false
		}
	}
}
