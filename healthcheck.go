package peerlink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
)

// A link is a health.Target: its probe is a yamux ping, and its activity
// is the last time bytes arrived on it.
var _ health.Target = (*link)(nil)

func (l *link) Peer() peer.ID { return l.peer }

func (l *link) Ping(ctx context.Context) (time.Duration, error) { return l.sess.PingContext(ctx) }

func (l *link) LastActivity() time.Time { return l.sess.LastRead() }

// startHealthMonitor starts the goroutine that sweeps the links; Close
// stops it through m.ctx.
func (m *ConnectionManager) startHealthMonitor() error {
	mon, err := health.NewMonitor(health.MonitorConfig{
		Config:  m.cfg.Health,
		Now:     m.clock.Now,
		Targets: m.healthTargets,
		OnResult: func(t health.Target, r health.Result) {
			m.noteHealth(t.(*link), r)
		},
		OnDead: func(t health.Target, r health.Result) {
			m.closeUnhealthy(t.(*link), r.Err)
		},
	})
	if err != nil {
		return fmt.Errorf("%w: Health: %w", ErrInvalidConfig, err)
	}
	m.spawn(func() { mon.Run(m.ctx) })
	return nil
}

// healthTargets yields every live link with its health record.
func (m *ConnectionManager) healthTargets(yield func(health.Target, *health.State) bool) {
	for _, r := range m.peers.Range {
		r.mu.Lock()
		l := r.link
		r.mu.Unlock()
		if l != nil && !l.dead() && !yield(l, l.health) {
			return
		}
	}
}

// closeUnhealthy starts closing a link that failed its health checks.
func (m *ConnectionManager) closeUnhealthy(l *link, err error) {
	if err == nil {
		err = errors.New("health check failed")
	}
	m.log.Info().Str("peer", l.peer.ShortString()).Err(err).Msg("link unhealthy: closing it")
	m.closeLink(l, ReasonUnhealthy, err)
}

// noteHealth carries a check's result into the peer's record, whose
// history outlives the link.
func (m *ConnectionManager) noteHealth(l *link, res health.Result) {
	if res.Skipped {
		return
	}
	r := l.rec
	m.stats.checks.Inc()
	if !res.Healthy {
		m.stats.checkFails.Inc()
	}
	r.mu.Lock()
	if res.Healthy {
		r.hist.ObserveRTT(res.RTT, res.Time)
		r.hist.RecordSuccess(res.Time)
	} else {
		r.hist.RecordError(res.Time)
	}
	m.rescoreLocked(r, m.clock.Now(), false)
	r.mu.Unlock()
}

// observe records a check made outside the monitor, closing the link if it
// was the last straw. health.Check stamps its result on the real clock;
// the record and the link's state keep the manager's, as the monitor's
// checks do, so that a run on an injected clock repeats.
func (m *ConnectionManager) observe(l *link, r health.Result) {
	r.Time = m.clock.Now()
	m.noteHealth(l, r)
	if l.health.Observe(r) {
		m.closeUnhealthy(l, r.Err)
	}
}

// HealthCheck checks every open link now (a ping each, at most
// Health.MaxInFlight at once, each bounded by Health.Timeout and ctx) and
// returns the peers whose check failed. A link whose check failure is its
// Health.FailureThreshold-th in a row is closed, as the monitor would.
func (m *ConnectionManager) HealthCheck(ctx context.Context) ([]peer.ID, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	links := m.liveLinks()
	targets := make([]health.Target, len(links))
	for i, l := range links {
		targets[i] = l
	}
	var unhealthy []peer.ID
	for i, r := range health.CheckAll(ctx, targets, m.cfg.Health) {
		if ctx.Err() != nil {
			break // an unfinished probe says nothing about the link
		}
		m.observe(links[i], r)
		if !r.Healthy {
			unhealthy = append(unhealthy, r.Peer)
		}
	}
	return unhealthy, ctx.Err()
}

// CheckConnectionHealth checks the link to id now: one ping bounded by
// Health.Timeout and ctx. The result counts towards the link's run of
// failures like the monitor's checks do.
func (m *ConnectionManager) CheckConnectionHealth(ctx context.Context, id peer.ID) (health.Result, error) {
	if err := m.usable(); err != nil {
		return health.Result{}, err
	}
	l := m.openLink(id)
	if l == nil {
		return health.Result{}, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	r := health.Check(ctx, l, m.cfg.Health)
	if ctx.Err() == nil {
		m.observe(l, r)
	}
	return r, nil
}

// AutoRecover brings the persistent peers back now, without waiting for
// the monitor or the reconnect backoff: it checks every link, closes the
// links of persistent peers that fail (ReasonUnhealthy), dials every
// persistent peer left without a link (at most Health.MaxInFlight at
// once, each joining any dial already in flight), and returns how many
// of them it connected.
func (m *ConnectionManager) AutoRecover(ctx context.Context) (int, error) {
	unhealthy, err := m.HealthCheck(ctx)
	if err != nil {
		return 0, err
	}
	sick := make(map[peer.ID]bool, len(unhealthy))
	for _, id := range unhealthy {
		sick[id] = true
	}
	var todo []peer.ID
	for id, r := range m.peers.Range {
		r.mu.Lock()
		l := r.link
		if r.persistent && (l == nil || l.dead() || sick[id]) {
			todo = append(todo, id)
		}
		closeIt := l != nil && sick[id] && r.persistent
		r.mu.Unlock()
		if closeIt {
			m.closeLink(l, ReasonUnhealthy, errors.New("auto-recover: health check failed"))
		}
	}
	var recovered atomic.Int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, max(1, m.cfg.Health.MaxInFlight))
	for _, id := range todo {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := m.connectLocked(ctx, m.lockRecord(id), true); err == nil {
				recovered.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(recovered.Load()), ctx.Err()
}
