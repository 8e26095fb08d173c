package peerlink

import (
	"errors"
	"time"

	"github.com/peerlink/peerlink/mux"
)

// Idle expiry and the cleanup task (seeds 003 and 004: pool TTL,
// evict_idle, evict_unhealthy, a periodic cleanup).

// Defaults of IdleConfig.
const (
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultCleanupInterval = 30 * time.Second
)

// IdleConfig sets idle expiry.
//
// A link is idle when no stream is open on it and none has been opened or
// ended on it for Timeout; the health monitor's pings and yamux's own
// frames do not count as use (they would keep every link alive). An idle
// link is closed (EventDisconnected, ReasonIdle) unless its peer is
// protected (Protect) or persistent. The peer's record stays, so a later
// OpenStream redials it.
//
// The manager learns a stream's start when it opens or accepts it and an
// inbound stream's end when its handler returns; an outbound stream's end
// it sees at the next look (EvictIdle, the cleanup task), so an idle link
// goes between Timeout and Timeout + CleanupInterval after its last use,
// never sooner.
type IdleConfig struct {
	// Timeout is how long a link may carry no stream (5 min, the seeds'
	// pool TTL); negative: links never expire.
	Timeout time.Duration
	// CleanupInterval is how often the cleanup task runs EvictIdle and
	// EvictUnhealthy: 30 s, or half of Timeout if that is shorter;
	// negative: no cleanup task (the calls still work).
	CleanupInterval time.Duration
}

func (c IdleConfig) withDefaults() IdleConfig {
	c.Timeout = offOr(c.Timeout, DefaultIdleTimeout)
	if c.CleanupInterval == 0 {
		c.CleanupInterval = DefaultCleanupInterval
		if c.Timeout > 0 {
			c.CleanupInterval = min(c.CleanupInterval, max(c.Timeout/2, time.Millisecond))
		}
	}
	c.CleanupInterval = max(c.CleanupInterval, -1)
	return c
}

// idleExempt reports whether r's link is kept however idle. r.mu must be
// held.
func idleExempt(r *record) bool {
	return trimExempt(r) || keptWarm(r)
}

// noteUse marks l as used now: a stream was opened or ended on it.
func (m *ConnectionManager) noteUse(l *link) {
	if m.cfg.Idle.Timeout > 0 {
		l.marks.usedAt.Store(m.clock.Now().UnixNano())
	}
}

// noteHandlerUse wraps a stream handler so that the link's use is noted
// when the handler starts and when it returns, with one wrapper per
// protocol rather than per stream.
func (m *ConnectionManager) noteHandlerUse(h mux.Handler) mux.Handler {
	if m.cfg.Idle.Timeout <= 0 {
		return h
	}
	return func(s *mux.Stream) {
		r, ok := m.peers.Get(s.RemotePeer())
		if !ok {
			h(s)
			return
		}
		if l := r.liveLink.Load(); l != nil {
			m.noteUse(l)
		}
		defer func() {
			if l := r.liveLink.Load(); l != nil {
				m.noteUse(l)
			}
		}()
		h(s)
	}
}

// idle reports whether l has carried no stream for timeout at now. Open
// streams count as use now, as does the end of streams seen open at the
// last look.
func (l *link) idle(now time.Time, timeout time.Duration) bool {
	t := now.UnixNano()
	if l.sess.NumStreams() > 0 {
		l.marks.usedAt.Store(t)
		l.marks.busy.Store(true)
		return false
	}
	if l.marks.busy.Swap(false) {
		l.marks.usedAt.Store(t) // they ended since the last look: count from now, never sooner
		return false
	}
	return t-max(l.marks.usedAt.Load(), l.openedAt.UnixNano()) >= int64(timeout)
}

// EvictIdle closes the links that have carried no stream for
// Idle.Timeout, except those of protected and persistent peers (see
// IdleConfig), and returns how many it closed: their closes started,
// their EventDisconnected (ReasonIdle) published. It never waits, so it
// is safe from inside a stream handler. The cleanup task calls it every
// Idle.CleanupInterval. With idle expiry off it returns 0.
func (m *ConnectionManager) EvictIdle() int {
	timeout := m.cfg.Idle.Timeout
	if timeout <= 0 || m.closed.Load() {
		return 0
	}
	now := m.clock.Now()
	closed := 0
	for _, r := range m.peers.Range {
		if l := r.liveLink.Load(); l != nil && !l.dead() && l.idle(now, timeout) && m.closeIf(l, ReasonIdle, nil, idleExempt) {
			closed++
		}
	}
	if closed > 0 {
		m.log.Debug().Int("closed", closed).Msg("idle links closed")
	}
	return closed
}

// errEvicted is the Err of a link EvictUnhealthy closes whose failed check
// left no error.
var errEvicted = errors.New("peerlink: evicted: failing its health checks")

// EvictUnhealthy closes the links that are failing their health checks —
// the last check failed and nothing has arrived since (see
// health.Stats.ConsecutiveFailures), or the monitor declared the link
// dead — and returns how many it closed (EventDisconnected,
// ReasonUnhealthy, with the last check's error). It spares no peer: a
// failing link serves nobody; a persistent peer is redialed, and a
// protected peer keeps its protection and tags in its record. The health
// monitor waits for Health.FailureThreshold failures in a row; the
// cleanup task, which calls EvictUnhealthy every Idle.CleanupInterval,
// closes a failing link at its next run without waiting for them. It
// never waits.
func (m *ConnectionManager) EvictUnhealthy() int {
	if m.closed.Load() {
		return 0
	}
	closed := 0
	for _, r := range m.peers.Range {
		l := r.liveLink.Load()
		if l == nil || l.dead() {
			continue
		}
		st := l.health.Snapshot()
		if st.ConsecutiveFailures == 0 && !st.Dead {
			continue
		}
		err := st.LastErr
		if err == nil {
			err = errEvicted
		}
		if m.closeIf(l, ReasonUnhealthy, err, nil) {
			closed++
		}
	}
	if closed > 0 {
		m.log.Info().Int("closed", closed).Msg("unhealthy links closed")
	}
	return closed
}
