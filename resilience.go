package peerlink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
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
		errors.Is(err, ErrNoAddresses), errors.Is(err, context.Canceled):
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
	reg, err := breaker.NewRegistry(settings, func(c breaker.StateChange) {
		// Called under the circuit's lock: publish never blocks.
		m.log.Debug().Str("peer", c.Peer.ShortString()).Stringer("from", c.From).Stringer("to", c.To).Msg("circuit")
		m.events.publish(Event{Type: EventCircuit, Peer: c.Peer, From: c.From, To: c.To, Time: c.Time})
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

func (m *ConnectionManager) newBackoff(maxElapsed time.Duration) *backoff.ExponentialBackOff {
	cfg := m.cfg.Backoff
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(cfg.InitialInterval),
		backoff.WithMultiplier(cfg.Multiplier),
		backoff.WithRandomizationFactor(cfg.RandomizationFactor),
		backoff.WithMaxInterval(cfg.MaxInterval),
		backoff.WithMaxElapsedTime(maxElapsed),
	)
}

// RetryConnect connects to id like Connect, retrying failed dials with
// Config.Backoff until one succeeds, ctx ends, Backoff.MaxElapsedTime
// passes, or an error that retrying cannot fix occurs (wrong peer ID,
// other network, gater refusal, open circuit), which is returned at once.
func (m *ConnectionManager) RetryConnect(ctx context.Context, id peer.ID) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := m.checkPeer(peer.AddrInfo{ID: id}); err != nil {
		return err
	}
	b := backoff.WithContext(m.newBackoff(m.cfg.Backoff.MaxElapsedTime), ctx)
	return backoff.Retry(func() error {
		_, err := m.connectLocked(ctx, m.lockEntry(id))
		if err != nil && (permanent(err) || errors.Is(err, ErrNoAddresses)) {
			return backoff.Permanent(err)
		}
		return err
	}, b)
}

// AddPersistentPeer adds info to the address book and keeps the peer
// connected: it is dialed now (in the background) and redialed with
// Config.Backoff whenever its link drops for any reason but a local
// Disconnect.
func (m *ConnectionManager) AddPersistentPeer(info peer.AddrInfo) error {
	e, err := m.addToBook(info)
	if err != nil {
		return err
	}
	if len(e.addrs) == 0 {
		m.forget(e)
		e.mu.Unlock()
		return fmt.Errorf("%w %s", ErrNoAddresses, info.ID)
	}
	e.persistent = true
	m.reconnectLocked(e)
	e.mu.Unlock()
	return nil
}

// RemovePersistentPeer stops keeping id connected. Its link, if open,
// stays open; a reconnect in progress stops after its current attempt.
func (m *ConnectionManager) RemovePersistentPeer(id peer.ID) {
	if e, ok := m.peers.Get(id); ok {
		e.mu.Lock()
		e.persistent = false
		e.mu.Unlock()
	}
}

// reconnectLocked starts the reconnect loop of a persistent peer that has
// no live link, unless it is running. e.mu must be held.
func (m *ConnectionManager) reconnectLocked(e *entry) {
	if !e.persistent || e.reconnecting || (e.link != nil && !e.link.dead()) {
		return
	}
	if m.spawn(func() { m.reconnect(e) }) {
		e.reconnecting = true
	}
}

// reconnect redials a persistent peer until it has a link again. Its
// first attempt waits a random part of Backoff.InitialInterval, so that
// many peers lost at once (the remote restarted, a partition healed) are
// redialed spread out, not in one burst. Each attempt is an ordinary dial
// that concurrent Connect and OpenStream calls join. After an I/O failure
// the next attempt waits as Backoff says, with no time limit; while the
// circuit is open it waits for half-open.
func (m *ConnectionManager) reconnect(e *entry) {
	b := m.newBackoff(0) // 0: never stop; attempts settle at MaxInterval
	wait := rand.N(m.cfg.Backoff.InitialInterval)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	log := m.log.With().Str("peer", e.id.ShortString()).Logger()
	for attempt := 1; ; attempt++ {
		select {
		case <-timer.C:
		case <-m.ctx.Done():
			return
		}
		e.mu.Lock()
		if e.removed || !e.persistent || (e.link != nil && !e.link.dead()) {
			e.reconnecting = false
			e.mu.Unlock()
			return
		}
		_, err := m.connectLocked(m.ctx, e)
		if err == nil {
			// Leave through the check above, under the lock: a link that
			// died since is then redialed, not forgotten.
			log.Debug().Int("attempt", attempt).Msg("reconnected")
			b.Reset()
			timer.Reset(0)
			continue
		}
		if m.closed.Load() {
			return
		}
		wait = b.NextBackOff()
		var open *breaker.OpenError
		if errors.As(err, &open) && !open.Until.IsZero() {
			// Half-open lets one trial through; being first to it is
			// worth a little jitter, not a whole backoff step.
			wait = time.Until(open.Until) + rand.N(m.cfg.Backoff.InitialInterval/4+1)
		}
		log.Debug().Err(err).Int("attempt", attempt).Dur("next", wait).Msg("reconnect failed")
		timer.Reset(wait)
	}
}
