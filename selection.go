package peerlink

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/balancer"
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
	s.m.recordOutcome(s.r, err != nil, latency)
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
	set := setPool.Get().(*recordSet)
	defer set.release()
	set.m, set.now = m, m.clock.Now()
	if candidates == nil {
		set.recs = m.live.records(m)
	} else {
		set.ids = candidates
		for _, id := range candidates {
			r, _ := m.peers.Get(id)
			set.own = append(set.own, r) // nil: not eligible
		}
		set.recs = set.own
	}
	i, buf, err := balancer.PickFrom(o.strategy, set, o.key, set.buf)
	set.buf = buf
	if err != nil {
		return nil, fmt.Errorf("peerlink: select among %d peers (%s): %w", len(set.recs), o.strategy.Name(), err)
	}
	r := set.recs[i]
	r.inflightStarts.Add(m.sinceEpoch(set.now))
	r.inflight.Add(1)
	return &Selection{Peer: r.id, m: m, r: r, start: set.now}, nil
}

// recordSet is SelectBest's candidates as a balancer.Set: each candidate
// is built from its record's atomics when the strategy reads it, so a
// strategy that draws two reads two, however many peers there are.
type recordSet struct {
	m    *ConnectionManager
	now  time.Time
	recs []*record            // the candidates; nil for an ID without a record
	ids  []peer.ID            // the caller's IDs, when it gave some
	own  []*record            // recs' backing array when built here, reused
	buf  []balancer.Candidate // for strategies that scan, reused
}

func (s *recordSet) Len() int { return len(s.recs) }

func (s *recordSet) At(i int) balancer.Candidate {
	if r := s.recs[i]; r != nil {
		return s.m.candidate(r, s.now)
	}
	return balancer.Candidate{ID: s.ids[i]} // no record: not eligible
}

// release clears s of every reference and returns it to setPool.
func (s *recordSet) release() {
	clear(s.own)
	clear(s.buf)
	*s = recordSet{own: s.own[:0], buf: s.buf[:0]}
	setPool.Put(s)
}

// setPool recycles SelectBest's candidate sets.
var setPool = sync.Pool{New: func() any { return new(recordSet) }}

// liveRecords keeps a snapshot of the records that have an open link,
// for SelectBest among all peers: rebuilt (one pass over the records) on
// the first call after a link opened or closed, read lock-free otherwise.
// While one caller rebuilds, the others use the snapshot before it: its
// records whose link has gone are not eligible, and a link opened an
// instant ago is not missed for long.
type liveRecords struct {
	gen  atomic.Uint64 // bumped after every link opened or detached
	mu   sync.Mutex    // one rebuild at a time
	snap atomic.Pointer[liveSnapshot]
}

type liveSnapshot struct {
	gen  uint64
	recs []*record
}

// changed notes that a record's link opened or closed.
func (l *liveRecords) changed() { l.gen.Add(1) }

// records returns the records with an open link, as of a recent moment.
func (l *liveRecords) records(m *ConnectionManager) []*record {
	s := l.snap.Load()
	if s != nil && s.gen == l.gen.Load() {
		return s.recs
	}
	if s != nil && !l.mu.TryLock() {
		return s.recs // another caller is rebuilding it
	}
	if s == nil {
		l.mu.Lock()
	}
	defer l.mu.Unlock()
	if s = l.snap.Load(); s != nil && s.gen == l.gen.Load() {
		return s.recs
	}
	gen := l.gen.Load() // before the pass: a change during it rebuilds again
	var recs []*record
	if s != nil {
		recs = make([]*record, 0, len(s.recs)+len(s.recs)/8+1)
	}
	for _, r := range m.peers.Range {
		if r.liveLink.Load() != nil {
			recs = append(recs, r)
		}
	}
	l.snap.Store(&liveSnapshot{gen: gen, recs: recs})
	return recs
}

// candidate returns r as the balancer sees it, from atomic loads and the
// link's counters.
func (m *ConnectionManager) candidate(r *record, now time.Time) balancer.Candidate {
	c := balancer.Candidate{
		ID: r.id,
		// The score, weighed by the share of recent requests that
		// succeeded: the score remembers errors for ErrorHalfLife, too
		// long to steer traffic off a peer that started failing a second
		// ago (P2C divides its cost by this).
		Score:       m.scoreOf(r, now) * (1 - recentFailShare(r, now)),
		Load:        int(r.inflight.Load()),
		Latency:     max(time.Duration(r.rttPeak.Load()), inflightLatency(r, m.sinceEpoch(now))),
		CircuitOpen: now.UnixNano() < r.openUntil.Load(),
	}
	if l := r.liveLink.Load(); l != nil && !l.dead() {
		c.Healthy = l.health.ConsecutiveFailures() == 0
		c.Load += l.sess.OpenStreams()
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
