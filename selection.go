package peerlink

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

// Peer selection (seed 002's select_best_connection): SelectBest builds a
// snapshot of the candidates from atomic loads (score, load, peak RTT,
// health, circuit) and lets a balancer.Strategy pick one. The pick counts
// as a request in flight on the peer until the caller reports its outcome
// with Selection.Done, which also feeds the peer's score.

// Selection is a peer chosen by SelectBest. Call Done once the request
// sent to it is over; until then it counts in the peer's load.
type Selection struct {
	// Peer is the peer chosen.
	Peer peer.ID

	m     *ConnectionManager
	r     *record
	start time.Time
	done  atomic.Bool
}

// Done reports the outcome of the request sent to the selected peer:
// err nil for a success, else the error, and latency, the time it took
// (0: the time since SelectBest). It releases the peer's in-flight count
// and feeds the peer's score (as RecordSuccess or RecordError do; a
// failure's latency counts as a round trip too, so a peer whose requests
// time out does not keep the round trip of its fast days). Calls after
// the first do nothing.
func (s *Selection) Done(err error, latency time.Duration) {
	if s == nil || s.done.Swap(true) {
		return
	}
	s.r.inflight.Add(-1)
	s.r.inflightStarts.Add(-s.m.sinceEpoch(s.start))
	if latency <= 0 {
		latency = s.m.clock.Now().Sub(s.start)
	}
	if err != nil {
		s.m.recordFailure(s.r, latency)
		return
	}
	s.m.RecordSuccess(s.Peer, latency)
}

// SelectOption changes one SelectBest call.
type SelectOption func(*selectOptions)

type selectOptions struct {
	strategy balancer.Strategy
	key      []byte
}

// WithStrategy makes SelectBest use s instead of Config.Balancer.
func WithStrategy(s balancer.Strategy) SelectOption {
	return func(o *selectOptions) { o.strategy = s }
}

// WithKey gives key-based strategies (balancer.Rendezvous) their key: the
// same key keeps its peer while that peer is healthy.
func WithKey(key []byte) SelectOption {
	return func(o *selectOptions) { o.key = key }
}

// candidatePool recycles the candidate snapshots of SelectBest.
var candidatePool = sync.Pool{New: func() any {
	s := make([]balancer.Candidate, 0, 64)
	return &s
}}

// SelectBest chooses a peer among candidates (nil: every peer with an open
// link) with Config.Balancer (P2C over peak-EWMA latency × load by
// default), or the strategy given by WithStrategy. A candidate is
// eligible when it has an open link that is not failing its health checks
// and its circuit is closed; with none eligible it fails with an error
// wrapping balancer.ErrNoCandidate. The chosen peer's in-flight count
// goes up until Selection.Done. ctx is checked before the pick.
func (m *ConnectionManager) SelectBest(ctx context.Context, candidates []peer.ID, opts ...SelectOption) (*Selection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := m.usable(); err != nil {
		return nil, err
	}
	o := selectOptions{strategy: m.balancer}
	for _, opt := range opts {
		opt(&o)
	}
	bp := candidatePool.Get().(*[]balancer.Candidate)
	cands := (*bp)[:0]
	defer func() {
		clear(cands)
		*bp = cands[:0]
		candidatePool.Put(bp)
	}()
	if candidates == nil {
		for _, r := range m.peers.Range {
			if r.liveLink.Load() != nil {
				cands = append(cands, m.candidate(r))
			}
		}
	} else {
		for _, id := range candidates {
			if r, ok := m.peers.Get(id); ok {
				cands = append(cands, m.candidate(r))
			} else {
				cands = append(cands, balancer.Candidate{ID: id}) // not eligible
			}
		}
	}
	i, err := o.strategy.Pick(cands, o.key)
	if err != nil {
		return nil, fmt.Errorf("peerlink: select among %d peers (%s): %w", len(cands), o.strategy.Name(), err)
	}
	r, ok := m.peers.Get(cands[i].ID)
	if !ok { // removed since the snapshot
		return nil, fmt.Errorf("peerlink: select: %s: %w", cands[i].ID.ShortString(), balancer.ErrNoCandidate)
	}
	start := m.clock.Now()
	r.inflightStarts.Add(m.sinceEpoch(start))
	r.inflight.Add(1)
	return &Selection{Peer: r.id, m: m, r: r, start: start}, nil
}

// candidate returns r as the balancer sees it, from atomic loads and the
// link's counters.
func (m *ConnectionManager) candidate(r *record) balancer.Candidate {
	now := m.clock.Now()
	c := balancer.Candidate{
		ID: r.id,
		// The score, weighed by the share of recent requests that
		// succeeded: the score remembers errors for ErrorHalfLife, too
		// long to steer traffic off a peer that started failing a second
		// ago (P2C divides its cost by this).
		Score:       m.QualityScore(r.id) * (1 - recentFailShare(r, now)),
		Load:        int(r.inflight.Load()),
		Latency:     max(time.Duration(r.rttPeak.Load()), inflightLatency(r, m.sinceEpoch(now))),
		CircuitOpen: m.breakers.State(r.id) == breaker.StateOpen,
	}
	if l := r.liveLink.Load(); l != nil && !l.dead() {
		c.Healthy = l.health.Snapshot().ConsecutiveFailures == 0
		c.Load += l.sess.NumStreams()
	}
	return c
}

// sinceEpoch returns t in nanoseconds since the manager's epoch (its
// creation, on its clock).
func (m *ConnectionManager) sinceEpoch(t time.Time) int64 { return int64(t.Sub(m.epoch)) }

// inflightLatency estimates a peer's latency from the requests in flight
// to it: twice their mean age. Requests arriving at a steady rate to a
// peer that answers in L have a mean age of about L/2, so for a healthy
// peer this is near its round trip; for one that stopped answering it
// grows from the moment it stopped, before any request has timed out
// (Finagle's peak EWMA learns of a slow peer only from answers).
func inflightLatency(r *record, now int64) time.Duration {
	n := int64(r.inflight.Load())
	if n <= 0 {
		return 0
	}
	age := now - r.inflightStarts.Load()/n
	return time.Duration(max(2*age, 0))
}
