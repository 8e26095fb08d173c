package peerlink

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/metrics"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/score"
)

// Quality scores. Each peer's score (package score) is computed from its
// record (RTTs, decayed errors and successes, reconnects, connected
// time), its link's health checks, its circuit breaker and the
// application's value, and cached in the record: reading it is two
// atomic loads while the cache is younger than scoreTTL, and a sample
// (RecordSuccess, RecordError, a health check) recomputes it in O(1).

// scoreTTL is how long a cached score is served before it is computed
// again (errors and peaks decay with time even without samples).
const scoreTTL = time.Second

// scoreInputs gathers r's figures as of now. r.mu must be held.
func (m *ConnectionManager) scoreInputs(r *record, now time.Time) score.Inputs {
	h := r.hist.Snapshot(now)
	in := score.Inputs{
		RTT:         h.RTT.EWMA,
		RTTPeak:     h.RTT.Peak,
		Successes:   h.SuccessRate,
		Errors:      h.ErrorRate,
		CircuitOpen: m.breakers.State(r.id) == breaker.StateOpen,
		Connected:   h.ConnectedFor,
		Reconnects:  h.Reconnects,
		Application: r.app,
	}
	if l := r.link; l != nil && !l.dead() {
		in.FailedChecks = int(min(l.health.Snapshot().ConsecutiveFailures, math.MaxInt32))
	}
	return in
}

// rescoreLocked computes r's score now and caches it, with the peak RTT
// it saw; with parts, it also returns the breakdown. r.mu must be held.
func (m *ConnectionManager) rescoreLocked(r *record, now time.Time, parts bool) score.Breakdown {
	in := m.scoreInputs(r, now)
	var b score.Breakdown
	if parts {
		b = score.Compute(m.scoreCfg, in)
	} else {
		b.Score = score.Value(m.scoreCfg, in)
	}
	r.rttPeak.Store(int64(in.RTTPeak))
	r.score.Store(math.Float64bits(b.Score))
	r.scoredAt.Store(now.UnixNano())
	return b
}

// QualityScore returns id's quality score in [0, 1]: 0 for a peer this
// manager does not know (nor any record of), or whose circuit is open.
// See package score for how it is made, and ScoreBreakdown for its parts.
// It is cheap: the score is cached and recomputed when the peer's figures
// change or the cache is a second old.
func (m *ConnectionManager) QualityScore(id peer.ID) float64 {
	r, ok := m.peers.Get(id)
	if !ok {
		return 0
	}
	return m.scoreOf(r, m.clock.Now())
}

// scoreOf returns r's cached score, recomputing it if it is scoreTTL old.
func (m *ConnectionManager) scoreOf(r *record, now time.Time) float64 {
	if s, ok := cachedScore(r, now); ok {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.rescoreLocked(r, now, false).Score
}

// cachedScore returns r's cached score, if it is younger than scoreTTL at
// now. It reads atomics only.
func cachedScore(r *record, now time.Time) (float64, bool) {
	if at := r.scoredAt.Load(); at != 0 && now.UnixNano()-at < int64(scoreTTL) {
		return math.Float64frombits(r.score.Load()), true
	}
	return 0, false
}

// ScoreBreakdown returns id's score with its parts (each with its weight
// and value), and false for a peer this manager has no record of.
func (m *ConnectionManager) ScoreBreakdown(id peer.ID) (score.Breakdown, bool) {
	r, ok := m.peers.Get(id)
	if !ok {
		return score.Breakdown{}, false
	}
	now := m.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.rescoreLocked(r, now, true), true
}

// SelectBest weighs each candidate by its recent failures: f, a moving
// share of failed requests that moves recentWeight of the way to each new
// outcome (so a run of failures counts at once, however many successes
// came before: 0.25, 0.44, 0.58, ... 0.9 after 8 failures in a row), and
// heals toward 0 with a half-life of recentHalfLife while no request is
// made, so that a peer left alone is tried again. The score's own error
// count remembers for ErrorHalfLife, too long to steer traffic off a
// peer that started failing a second ago.
const (
	recentWeight   = 0.5
	recentHalfLife = 10 * time.Second
)

// recentFailShare returns r's recent failure share, healed to now. It
// reads atomics only.
func recentFailShare(r *record, now time.Time) float64 {
	return math.Float64frombits(r.recentFail.Load()) * metrics.Decay(time.Duration(now.UnixNano()-r.recentAt.Load()), recentHalfLife)
}

// noteOutcomeLocked adds a request's outcome to r's recent failure share.
// r.mu must be held (it orders the writers).
func noteOutcomeLocked(r *record, failed bool, now time.Time) {
	f := recentFailShare(r, now) * (1 - recentWeight)
	if failed {
		f += recentWeight
	}
	r.recentFail.Store(math.Float64bits(f))
	r.recentAt.Store(now.UnixNano())
}

// RecordSuccess tells the manager that a request to id succeeded and took
// latency (0 if not measured): it counts toward the errors part of the
// score and, with a latency, toward its round trips (seed 004's
// record_success). A peer with no record is ignored.
func (m *ConnectionManager) RecordSuccess(id peer.ID, latency time.Duration) {
	if r, ok := m.peers.Get(id); ok {
		m.recordOutcome(r, false, latency)
	}
}

// RecordError tells the manager that a request to id failed (seed 004's
// record_error). The error counts toward the score's errors part, decayed
// with Score's half-life (the peer record's ErrorHalfLife, 10 min). A nil
// err is ignored, as is a peer with no record.
func (m *ConnectionManager) RecordError(id peer.ID, err error) {
	if err == nil {
		return
	}
	r, ok := m.peers.Get(id)
	if !ok {
		return
	}
	m.recordOutcome(r, true, 0)
}

// recordOutcome counts a request to r that succeeded or failed and took
// latency (0: not measured). A failure's latency is a round trip too, as
// Finagle counts it: a peer whose requests time out must not keep the
// round trip of its fast days.
func (m *ConnectionManager) recordOutcome(r *record, failed bool, latency time.Duration) {
	switch {
	case failed:
		m.stats.reqErrors.Inc()
	case latency > 0:
		m.stats.requests.Record(latency)
	}
	now := m.clock.Now()
	r.mu.Lock()
	if failed {
		r.hist.RecordError(now)
	} else {
		r.hist.RecordSuccess(now)
	}
	if latency > 0 {
		r.hist.ObserveRTT(latency, now)
	}
	noteOutcomeLocked(r, failed, now)
	m.rescoreLocked(r, now, false)
	r.mu.Unlock()
}

// SetApplicationScore sets the application's own value for id, in
// [−1, 1] (0 is neutral, the default): for example −1 for a peer that sent
// invalid blocks (gossipsub's P5). It weighs Score.Weights.Application in
// the mean; a positive value ranks a well-behaved peer higher but cannot
// lift one above what its errors and health checks allow (see package
// score). The value lives in the peer's record, which it also creates, so
// it outlives the peer's links.
func (m *ConnectionManager) SetApplicationScore(id peer.ID, v float64) error {
	if math.IsNaN(v) || v < -1 || v > 1 {
		return fmt.Errorf("%w: application score %v for %s: want a value in [−1, 1]", ErrInvalidConfig, v, id.ShortString())
	}
	if id.IsZero() || id == m.id {
		return fmt.Errorf("%w: %s", ErrInvalidPeer, id.ShortString())
	}
	r := m.lockRecord(id)
	r.app = v
	m.rescoreLocked(r, m.clock.Now(), false)
	r.mu.Unlock()
	return nil
}

// PeerScore is a peer and its quality score.
type PeerScore struct {
	Peer  peer.ID
	Score float64
}

// HealthyPeers returns the peers with an open link that is not failing
// its health checks and whose circuit is closed, best score first (ties
// in ID order): seed 002's get_healthy_connections.
func (m *ConnectionManager) HealthyPeers() []PeerScore {
	links := m.liveLinks()
	out := make([]PeerScore, 0, len(links))
	for _, l := range links {
		if l.health.Snapshot().ConsecutiveFailures > 0 || m.breakers.State(l.peer) == breaker.StateOpen {
			continue
		}
		out = append(out, PeerScore{Peer: l.peer, Score: m.QualityScore(l.peer)})
	}
	slices.SortFunc(out, func(a, b PeerScore) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return a.Peer.Compare(b.Peer)
	})
	return out
}
