package peerlink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/transport"
)

// ErrCircuitOpen is returned by Connect, RetryConnect and OpenStream when
// the peer's circuit breaker is open (too many failed dials in a row). It
// is breaker.ErrOpen; errors.As with *breaker.OpenError tells until when.
var ErrCircuitOpen = breaker.ErrOpen

// excluded reports whether a dial error says nothing about the peer's
// health, so that its circuit must not count it: the manager's own
// refusals, the local gater, closing, a caller's cancellation, and the
// crossed-dial refusal that simultaneous dials produce.
func excluded(err error) bool {
	var refused *transport.RemoteRefusedError
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, transport.ErrGated),
		errors.Is(err, ErrConnectionLimit), errors.Is(err, ErrInboundLimit),
		errors.Is(err, ErrNoAddresses), errors.Is(err, context.Canceled),
		errors.Is(err, errDialSatisfied),
		// The peer is up, but its listener is busy or has enough links
		// from our address: try later, and do not count it as the peer's
		// failure.
		errors.Is(err, transport.ErrListenerBusy), errors.Is(err, transport.ErrAddrConnLimit):
		return true
	case errors.As(err, &refused):
		return refused.Code == transport.RefusalDuplicate
	}
	return false
}

// permanent reports whether retrying a failed dial cannot help until
// something changes: the peer is not who we expect, belongs to another
// network, is refused by our gater, or its circuit is open.
func permanent(err error) bool {
	return errors.Is(err, transport.ErrPeerIDMismatch) || errors.Is(err, transport.ErrNetworkMismatch) ||
		errors.Is(err, transport.ErrGated) || errors.Is(err, ErrCircuitOpen) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrDialSelf) || errors.Is(err, ErrInvalidPeer)
}

func (m *ConnectionManager) newBreakers() error {
	settings := m.cfg.Breaker
	user := settings.IsExcluded
	settings.IsExcluded = func(err error) bool {
		return excluded(err) || (user != nil && user(err))
	}
	if settings.Clock == nil {
		settings.Clock = m.clock // open timeouts and windows on the manager's time
	}
	openFor := settings.OpenTimeout
	if openFor == 0 {
		openFor = breaker.DefaultOpenTimeout
	}
	reg, err := breaker.NewRegistry(settings, func(c breaker.StateChange) {
		// Called under the circuit's lock: publish never blocks.
		if r, ok := m.peers.Get(c.Peer); ok {
			var until int64
			if c.To == breaker.StateOpen {
				// On the manager's clock, as SelectBest reads it.
				until = m.clock.Now().Add(openFor).UnixNano()
			}
			r.openUntil.Store(until)
		}
		m.log.Debug().Str("peer", c.Peer.ShortString()).Stringer("from", c.From).Stringer("to", c.To).Msg("circuit")
		m.events.publish(Event{Type: EventCircuit, Peer: c.Peer, From: c.From, To: c.To, Time: c.Time})
		switch c.To {
		case breaker.StateClosed:
			m.stats.circuits[0].Inc()
		case breaker.StateHalfOpen:
			m.stats.circuits[1].Inc()
		case breaker.StateOpen:
			m.stats.circuits[2].Inc()
		}
	})
	if err != nil {
		return fmt.Errorf("%w: Breaker: %w", ErrInvalidConfig, err)
	}
	m.breakers = reg
	return nil
}

// BreakerState returns the state of id's circuit breaker (closed for a
// peer never dialed).
func (m *ConnectionManager) BreakerState(id peer.ID) breaker.State {
	return m.breakers.State(id)
}

// newBackoff returns backoff/v4's exponential backoff on the manager's
// clock, its jitter drawn from the manager's random source (so that a
// seeded simulation repeats itself); maxElapsed 0 never stops.
func (m *ConnectionManager) newBackoff(maxElapsed time.Duration) backoff.BackOff {
	cfg := m.cfg.Backoff
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(cfg.InitialInterval),
		backoff.WithMultiplier(cfg.Multiplier),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxInterval(cfg.MaxInterval),
		backoff.WithMaxElapsedTime(maxElapsed),
		backoff.WithClockProvider(m.clock),
	)
	return &jittered{b: b, rand: m.rand, factor: cfg.RandomizationFactor}
}

// jittered applies RandomizationFactor as backoff/v4 would, from the
// manager's random source instead of the global one.
type jittered struct {
	b      *backoff.ExponentialBackOff
	rand   *clock.Rand
	factor float64
}

func (j *jittered) NextBackOff() time.Duration {
	d := j.b.NextBackOff()
	if d == backoff.Stop {
		return d
	}
	return j.rand.Jitter(d, j.factor)
}

func (j *jittered) Reset() { j.b.Reset() }

// backoffTimer runs backoff.RetryNotifyWithTimer's waits on the manager's
// clock.
type backoffTimer struct {
	clock clock.Clock
	t     clock.Timer
}

func (t *backoffTimer) Start(d time.Duration) {
	if t.t == nil {
		t.t = t.clock.NewTimer(d)
		return
	}
	t.t.Reset(d)
}

func (t *backoffTimer) Stop() {
	if t.t != nil {
		t.t.Stop()
	}
}

func (t *backoffTimer) C() <-chan time.Time { return t.t.C() }

// RetryConnect connects to id like Connect, retrying failed dials with
// Config.Backoff until one succeeds, ctx ends, Backoff.MaxElapsedTime
// passes, or an error that retrying cannot fix occurs (wrong peer ID,
// other network, gater refusal, open circuit), which is returned at once.
func (m *ConnectionManager) RetryConnect(ctx context.Context, id peer.ID) error {
	if err := m.usable(); err != nil {
		return err
	}
	if err := m.checkPeer(peer.AddrInfo{ID: id}); err != nil {
		return err
	}
	b := backoff.WithContext(m.newBackoff(m.cfg.Backoff.MaxElapsedTime), ctx)
	return backoff.RetryNotifyWithTimer(func() error {
		_, err := m.connectLocked(ctx, m.lockRecord(id), true)
		if err != nil && (permanent(err) || errors.Is(err, ErrNoAddresses)) {
			return backoff.Permanent(err)
		}
		return err
	}, b, nil, &backoffTimer{clock: m.clock})
}

// AddPersistentPeer adds info to the address book and keeps the peer
// connected: it is dialed now (in the background) and redialed with
// Config.Backoff whenever its link drops for any reason but a local
// Disconnect.
func (m *ConnectionManager) AddPersistentPeer(info peer.AddrInfo) error {
	r, err := m.addToBook(info, peerstore.SourcePersistent)
	if err != nil {
		return err
	}
	if !r.book.HasDialable(m.clock.Now()) {
		m.dropIfUnused(r)
		r.mu.Unlock()
		return fmt.Errorf("%w %s", ErrNoAddresses, info.ID)
	}
	r.persistent = true
	m.reconnectLocked(r)
	r.mu.Unlock()
	return nil
}

// RemovePersistentPeer stops keeping id connected. Its link, if open,
// stays open; a reconnect in progress stops after its current attempt.
func (m *ConnectionManager) RemovePersistentPeer(id peer.ID) {
	if r, ok := m.peers.Get(id); ok {
		r.mu.Lock()
		r.persistent = false
		r.lastActive = m.clock.Now()
		r.mu.Unlock()
	}
}

// reconnectLocked starts the reconnect loop of a persistent peer that has
// no live link, unless it is running. r.mu must be held.
func (m *ConnectionManager) reconnectLocked(r *record) {
	if !r.persistent || r.reconnecting || (r.link != nil && !r.link.dead()) || m.draining.Load() {
		return
	}
	if m.spawn(func() { m.reconnect(r) }) {
		r.reconnecting = true
	}
}

// reconnect redials a persistent peer until it has a link again. Its
// first attempt waits a random part of Backoff.InitialInterval, so that
// many peers lost at once (the remote restarted, a partition healed) are
// redialed spread out, not in one burst. Each attempt is an ordinary dial
// that concurrent Connect and OpenStream calls join. After an I/O failure
// the next attempt waits as Backoff says, with no time limit; while the
// circuit is open it waits for half-open.
func (m *ConnectionManager) reconnect(r *record) {
	b := m.newBackoff(0) // 0: never stop; attempts settle at MaxInterval
	wait := m.rand.DurationN(m.cfg.Backoff.InitialInterval)
	timer := m.clock.NewTimer(wait)
	defer timer.Stop()
	log := m.log.With().Str("peer", r.id.ShortString()).Logger()
	log.Debug().Dur("first", wait).Msg("reconnect scheduled")
	for attempt := 1; ; attempt++ {
		select {
		case <-timer.C():
		case <-m.ctx.Done():
			return
		}
		r.mu.Lock()
		if r.removed || !r.persistent || m.currentLink(r) != nil {
			r.reconnecting = false
			r.mu.Unlock()
			return
		}
		_, err := m.connectLocked(m.ctx, r, true)
		if err == nil {
			// Leave through the check above, under the lock: a link that
			// died since is then redialed, not forgotten.
			log.Debug().Int("attempt", attempt).Msg("reconnected")
			b.Reset()
			timer.Reset(0)
			continue
		}
		if m.closed.Load() || m.ctx.Err() != nil {
			return
		}
		wait = b.NextBackOff()
		var open *breaker.OpenError
		if errors.As(err, &open) && !open.Until.IsZero() {
			// Half-open lets one trial through; being first to it is
			// worth a little jitter, not a whole backoff step.
			wait = open.Until.Sub(m.clock.Now()) + m.rand.DurationN(m.cfg.Backoff.InitialInterval/4+1)
		}
		log.Debug().Err(err).Int("attempt", attempt).Dur("next", wait).Msg("reconnect failed")
		timer.Reset(wait)
	}
}
