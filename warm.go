package peerlink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/warming"
)

// Connection warming: links made ready before they are needed. A warm
// peer has a link whose handshake is done and whose round trip a ping has
// measured (the RTT feeds the peer's record as a health check's does).
// WarmConnections warms the peers it is given; the keep-warm loop keeps
// Warming.MinWarm peers warm, chosen from the address book by package
// warming's policy, and warms extras when the streams fill the links.
//
// The state lives in the peer's record, so it survives the link: a warm
// peer whose warm link closes, for any reason, is cold again (a new link
// is warm only once pinged), and one whose attempt failed stays failed
// until it is retried. Each change is published as an EventWarming.

// Defaults of WarmingConfig's zero fields.
const (
	DefaultWarmInterval       = 10 * time.Second
	DefaultWarmExploreShare   = warming.DefaultExploreShare
	DefaultWarmScaleThreshold = warming.DefaultScaleThreshold
	DefaultWarmMaxConcurrent  = warming.DefaultMaxConcurrent
)

// WarmingConfig configures connection warming. Its zero value keeps no
// peer warm and does not scale; WarmConnections works whatever it says.
type WarmingConfig struct {
	// MinWarm is how many peers the keep-warm loop keeps warm, chosen
	// from the address book by quality score (with a share of the slots
	// for peers never tried: ExploreShare); a peer that only dialed us,
	// with no address to dial it on, is never chosen. 0, the default,
	// turns the loop off unless MaxExtra is set. It must fit
	// MaxConnections: warm links count like any link, and warming opens
	// none past the limit.
	MinWarm int
	// Interval is the time between keep-warm rounds: 10 s. A kept peer's
	// warm link closing, or an attempt of the loop's failing, starts a
	// round at once, so a lost warm link is replaced without waiting.
	Interval time.Duration
	// ExploreShare is the share of the MinWarm slots kept for peers never
	// tried, drawn at random (Config.Rand) so that a newcomer gets a link
	// and earns a score: 0 means 0.25 (one slot in four; with fewer than
	// four slots, a slot one round in 1/(MinWarm × share)); negative
	// means none. See package warming.
	ExploreShare float64
	// MaxExtra is how many extra peers preemptive scaling may have warm
	// at a time (a kept peer that lost its slot while warm counts as
	// one, until it closes): when the streams open over all links pass
	// ScaleThreshold (0 means 0.8) of the links' stream limits, the loop
	// warms the best peers without a link, enough to bring the
	// utilisation back under the threshold. 0, the default, turns scaling
	// off. Extras are not kept: when the load falls they are left to
	// close as idle links do.
	MaxExtra       int
	ScaleThreshold float64
	// MaxConcurrent bounds the attempts under way at once, those of
	// WarmConnections and of the loop together: 0 means 16.
	MaxConcurrent int
	// PingTimeout bounds an attempt's ping: 0 means Health.Timeout (5 s).
	// The dial before it is bounded by DialTimeout.
	PingTimeout time.Duration
}

// setDefaults validates w, naming the bad field, and fills in its zero
// fields; cfg's limits and backoff are read, so cfg has its own defaults.
func (w *WarmingConfig) setDefaults(cfg *Config) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: Warming.%s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case w.MinWarm < 0:
		return bad("MinWarm", "is %d; want 0 (off) or more", w.MinWarm)
	case cfg.MaxConnections > 0 && w.MinWarm > cfg.MaxConnections:
		return bad("MinWarm", "is %d, more than MaxConnections (%d)", w.MinWarm, cfg.MaxConnections)

	case w.Interval < 0:
		return bad("Interval", "is %v; want a positive duration, or 0 for the default", w.Interval)
	case math.IsNaN(w.ExploreShare) || w.ExploreShare > 1:
		return bad("ExploreShare", "is %v; want a share up to 1 (0: the default, negative: none)", w.ExploreShare)
	case w.MaxExtra < 0:
		return bad("MaxExtra", "is %d; want 0 (off) or more", w.MaxExtra)
	case !(w.ScaleThreshold >= 0 && w.ScaleThreshold <= 1):
		return bad("ScaleThreshold", "is %v; want a utilisation in (0, 1], or 0 for the default", w.ScaleThreshold)
	case w.MaxConcurrent < 0:
		return bad("MaxConcurrent", "is %d; want 0 (the default) or more", w.MaxConcurrent)
	case w.PingTimeout < 0:
		return bad("PingTimeout", "is %v; want a positive duration, or 0 for the default", w.PingTimeout)
	}
	if w.Interval == 0 {
		w.Interval = DefaultWarmInterval
	}
	if w.ExploreShare == 0 {
		w.ExploreShare = DefaultWarmExploreShare
	}
	if w.ScaleThreshold == 0 {
		w.ScaleThreshold = DefaultWarmScaleThreshold
	}
	if w.MaxConcurrent == 0 {
		w.MaxConcurrent = DefaultWarmMaxConcurrent
	}
	if w.PingTimeout == 0 {
		w.PingTimeout = cfg.Health.Timeout
		if w.PingTimeout == 0 {
			w.PingTimeout = health.DefaultTimeout
		}
	}
	if err := w.policy(cfg).Validate(); err != nil {
		return fmt.Errorf("%w: Warming: %w", ErrInvalidConfig, err)
	}
	return nil
}

// policy is w as package warming takes it: failed peers are retried on
// the manager's Backoff.
func (w *WarmingConfig) policy(cfg *Config) warming.Config {
	return warming.Config{
		MinWarm:        w.MinWarm,
		ExploreShare:   max(w.ExploreShare, 0),
		MaxExtra:       w.MaxExtra,
		ScaleThreshold: w.ScaleThreshold,
		Stickiness:     warming.DefaultStickiness,
		MaxConcurrent:  w.MaxConcurrent,
		RetryInitial:   cfg.Backoff.InitialInterval,
		RetryMax:       max(cfg.Backoff.MaxInterval, cfg.Backoff.InitialInterval),
	}
}

// warmer is the manager's warming machinery.
type warmer struct {
	policy *warming.Policy
	// slots holds one token per attempt under way (MaxConcurrent).
	slots chan struct{}
	// kick asks the loop for a round now; a send never blocks.
	kick chan struct{}

	mu    sync.Mutex // one round at a time; guards the scratch below
	cands []warming.Candidate
	recs  []*record
	plan  warming.Plan
}

// warmRecord is a peer's warming state, in its record (allocated the
// first time the peer is warmed or chosen: most records never are). The
// record's mutex guards it, but for kept.
type warmRecord struct {
	state       warming.State
	role        warming.Role
	link        LinkID        // the link a Warm state is about
	rtt         time.Duration // its warming ping's round trip
	call        *warmCall     // the attempt under way
	failures    int           // attempts failed in a row
	lastFailure time.Time
	// kept mirrors role == Kept for readers without the lock.
	kept atomic.Bool
}

// warmCall is one attempt; every WarmConnections for the peer waits on it.
type warmCall struct {
	done chan struct{}
	res  WarmResult
}

// WarmResult is what became of one peer given to WarmConnections.
type WarmResult struct {
	Peer peer.ID
	// State is warming.Warm on success; warming.Failed when the dial or
	// the ping failed, warming.Cold when the attempt was called off or
	// could not start (no address, a bad ID), warming.Warming when ctx
	// ended while it was under way.
	State warming.State
	// RTT is the round trip the warming ping measured.
	RTT time.Duration
	Err error
}

// startWarming readies warming and, when it has anything to keep warm,
// starts the keep-warm loop, which Close stops.
func (m *ConnectionManager) startWarming() error {
	p, err := warming.New(m.cfg.Warming.policy(&m.cfg), m.rand)
	if err != nil {
		return fmt.Errorf("%w: Warming: %w", ErrInvalidConfig, err)
	}
	m.warm.policy = p
	m.warm.slots = make(chan struct{}, m.cfg.Warming.MaxConcurrent)
	m.warm.kick = make(chan struct{}, 1)
	if m.cfg.Warming.MinWarm > 0 || m.cfg.Warming.MaxExtra > 0 {
		m.spawn(m.warmLoop)
	}
	return nil
}

// warmLoop runs a keep-warm round every Warming.Interval, and at once
// when one is asked for, until Close.
func (m *ConnectionManager) warmLoop() {
	m.KeepWarm()
	t := m.clock.NewTimer(m.cfg.Warming.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			t.Reset(m.cfg.Warming.Interval)
		case <-m.warm.kick:
		case <-m.ctx.Done():
			return
		}
		m.KeepWarm()
	}
}

// kickWarm asks the keep-warm loop for a round now. It never blocks.
func (m *ConnectionManager) kickWarm() {
	select {
	case m.warm.kick <- struct{}{}:
	default:
	}
}

// warmRoom is how many links warming may add to n open under the limits
// in force (-1: no limit): up to the high water mark if there is one,
// else to MaxConnections, so that warming never starts what a trim would
// undo.
func warmRoom(l *ConnectionLimits, n int) int {
	limit := l.MaxConnections
	if hw := l.Trim.HighWater; hw > 0 && (limit <= 0 || hw < limit) {
		limit = hw
	}
	if limit <= 0 {
		return -1
	}
	return max(limit-n, 0)
}

// keptWarm reports whether r is one of the peers the keep-warm loop keeps
// warm (its last round chose it: it is warm, or being warmed): idle
// expiry is to leave their links alone. It takes no lock.
func keptWarm(r *record) bool {
	w := r.warm.Load()
	return w != nil && w.kept.Load()
}

// warmStateLocked returns r's warming state, allocated if need be. r.mu
// must be held.
func warmStateLocked(r *record) *warmRecord {
	w := r.warm.Load()
	if w == nil {
		w = new(warmRecord)
		r.warm.Store(w)
	}
	return w
}

// WarmingState returns id's warming state: warming.Cold for a peer the
// manager has no record of.
func (m *ConnectionManager) WarmingState(id peer.ID) warming.State {
	r, ok := m.peers.Get(id)
	if !ok {
		return warming.Cold
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.warm.Load(); w != nil {
		return w.state
	}
	return warming.Cold
}

// WarmPeers returns the peers that are warm now, in ID order.
func (m *ConnectionManager) WarmPeers() []peer.ID {
	var ids []peer.ID
	for _, r := range m.peers.Range {
		r.mu.Lock()
		if w := r.warm.Load(); w != nil && w.state == warming.Warm {
			ids = append(ids, r.id)
		}
		r.mu.Unlock()
	}
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

// KeptWarmPeers returns the peers the keep-warm loop keeps warm, in ID
// order: the kept set its last round chose (MinWarm peers once it has
// found them), warm or being warmed. Warm peers outside it (extras, peers
// that lost their slot, peers warmed by WarmConnections) are left to
// close when idle.
func (m *ConnectionManager) KeptWarmPeers() []peer.ID {
	var ids []peer.ID
	for _, r := range m.peers.Range {
		if keptWarm(r) {
			ids = append(ids, r.id)
		}
	}
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

// WarmConnections warms the peers ids before they are needed: each is
// dialed unless it has a link (through Connect's path: its circuit
// breaker, one dial per peer shared with every other caller, its
// addresses tried happy-eyeballs style), and its link pinged once to
// measure the round trip, which feeds its record as a health check's
// would. At most Warming.MaxConcurrent attempts run at once; a peer
// already being warmed is waited for, not warmed twice, and a peer that is
// warm returns at once.
//
// It returns one result per ID, in the order given, and an error joining
// those of the peers that did not become warm, each naming its peer and
// wrapping the cause (errors.Is finds ErrNoAddresses, ErrCircuitOpen,
// context.DeadlineExceeded, ...). ctx bounds the wait only: an attempt
// under way when it ends goes on (its outcome is published as an
// EventWarming), and its result says warming.Warming with ctx's error.
//
// An ID given twice shares one attempt. A warm peer that nobody uses is
// not kept open by this call: its link closes like any idle link unless
// the keep-warm loop keeps it.
func (m *ConnectionManager) WarmConnections(ctx context.Context, ids ...peer.ID) ([]WarmResult, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	results := make([]WarmResult, len(ids))
	calls := make([]*warmCall, len(ids))
	for i, id := range ids {
		results[i].Peer = id
		if err := m.checkPeer(peer.AddrInfo{ID: id}); err != nil {
			results[i].Err = err
			continue
		}
		if err := ctx.Err(); err != nil { // nobody waits: start nothing more
			results[i].State, results[i].Err = m.WarmingState(id), err
			continue
		}
		r, ok := m.peers.Get(id)
		if !ok {
			results[i].Err = fmt.Errorf("%w %s", ErrNoAddresses, id)
			continue
		}
		calls[i], results[i] = m.beginWarm(ctx, r, true)
	}
	var errs []error
	for i, call := range calls {
		if call != nil {
			select {
			case <-call.done:
				results[i] = call.res
			case <-ctx.Done():
				results[i] = WarmResult{Peer: ids[i], State: m.WarmingState(ids[i]), Err: ctx.Err()}
			}
		}
		if err := results[i].Err; err != nil {
			errs = append(errs, fmt.Errorf("peerlink: warm %s: %w", ids[i].ShortString(), err))
		}
	}
	return results, errors.Join(errs...)
}

// beginWarm starts an attempt on r, or joins the one under way, and
// returns it; with no attempt to wait for, it returns nil and the result:
// the peer is warm already, has nothing to dial, or (without wait) no
// attempt slot is free. With wait it waits for a slot, bounded by ctx.
func (m *ConnectionManager) beginWarm(ctx context.Context, r *record, wait bool) (*warmCall, WarmResult) {
	res := WarmResult{Peer: r.id}
	slot := false
	release := func() {
		if slot {
			<-m.warm.slots
		}
	}
	for {
		r.mu.Lock()
		w := warmStateLocked(r)
		if call := w.call; call != nil {
			r.mu.Unlock()
			release()
			return call, res
		}
		l := m.currentLink(r) // a dead link is detached first: its warm state goes cold
		switch {
		case r.removed:
			res.Err = fmt.Errorf("%w %s (removed)", ErrNoAddresses, r.id)
		case w.state == warming.Warm && l != nil && l.id == w.link:
			res.State, res.RTT = warming.Warm, w.rtt
		case l == nil && r.admitted.IsZero() && !r.book.HasDialable(m.clock.Now()):
			res.State, res.Err = w.state, fmt.Errorf("%w %s", ErrNoAddresses, r.id)
		case !slot:
			select {
			case m.warm.slots <- struct{}{}:
				slot = true
			default:
			}
		}
		if res.Err != nil || res.State == warming.Warm {
			r.mu.Unlock()
			release()
			return nil, res
		}
		if !slot {
			r.mu.Unlock()
			if !wait {
				res.State = w.state
				return nil, res
			}
			select {
			case m.warm.slots <- struct{}{}:
				slot = true
			case <-ctx.Done():
				res.State, res.Err = m.WarmingState(r.id), ctx.Err()
				return nil, res
			case <-m.ctx.Done():
				res.Err = ErrClosed
				return nil, res
			}
			continue // things may have changed while we waited
		}
		call := &warmCall{done: make(chan struct{})}
		if !m.spawn(func() { m.runWarm(r, call) }) {
			r.mu.Unlock()
			release()
			res.Err = ErrClosed
			return nil, res
		}
		// The attempt's goroutine owns the slot now; it waits for r.mu,
		// which is released only once the attempt is recorded.
		w.call = call
		m.warmTransitionLocked(r, w, warming.Start, 0, nil)
		r.mu.Unlock()
		return call, res
	}
}

// runWarm is one attempt: a link (dialed if need be), then a ping. It
// holds an attempt slot, which it gives back when done.
func (m *ConnectionManager) runWarm(r *record, call *warmCall) {
	defer func() { <-m.warm.slots }()
	var (
		l   *link
		rtt time.Duration
		err error
	)
	for range 2 {
		r.mu.Lock()
		l, err = m.connectLocked(m.ctx, r, true) // the dial is bounded by DialTimeout
		if err != nil {
			break
		}
		if rtt, err = m.warmPing(l); m.ctx.Err() != nil {
			break
		}
		r.mu.Lock()
		lost := l.detached || r.link != l || l.dead()
		r.mu.Unlock()
		if !lost {
			break
		}
		// The link ended under the ping or right after it: replaced by
		// the peer's own (two dials crossed), or closed. Warm the peer's
		// link now, once.
	}
	r.mu.Lock()
	w := warmStateLocked(r)
	ev := warming.Succeed
	switch {
	case err == nil && (l.detached || r.link != l):
		err, ev = errWarmLinkLost, warming.Abort
	case err != nil && warmAborted(err):
		ev = warming.Abort
	case err != nil:
		ev = warming.Fail
	}
	var id LinkID
	if l != nil {
		id = l.id
	}
	w.call = nil
	if ev == warming.Succeed {
		w.rtt = rtt
	}
	kick := ev != warming.Succeed && w.role != warming.None
	m.warmTransitionLocked(r, w, ev, id, err)
	call.res = WarmResult{Peer: r.id, State: w.state, Err: err}
	if ev == warming.Succeed {
		call.res.RTT = rtt
	}
	r.mu.Unlock()
	close(call.done)
	if kick {
		m.kickWarm() // a kept peer or an extra is missing: replace it now
	}
}

// warmPing pings l for an attempt and records the result as a health
// check's, unless the ping failed because the link ended (that is the
// link's close to account for, not a failed check) or the manager is
// closing.
func (m *ConnectionManager) warmPing(l *link) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Warming.PingTimeout)
	defer cancel()
	sent := m.clock.Now()
	rtt, err := l.sess.PingContext(ctx)
	if m.ctx.Err() == nil && (err == nil || !l.dead()) {
		m.observe(l, health.Result{Peer: l.peer, RTT: rtt, Healthy: err == nil, Err: err, Time: sent})
	}
	if err != nil {
		return 0, fmt.Errorf("ping: %w", err)
	}
	return rtt, nil
}

// errWarmLinkLost is an attempt's error when its link closed before the
// attempt was recorded.
var errWarmLinkLost = errors.New("peerlink: the link closed while it was being warmed")

// warmAborted reports whether an attempt's error says nothing of the
// peer: the node is closing, or its own connection limits refused the
// dial. The peer goes back to cold rather than failed, without a backoff.
func warmAborted(err error) bool {
	return errors.Is(err, ErrClosed) || errors.Is(err, ErrShuttingDown) || errors.Is(err, context.Canceled) ||
		errors.Is(err, ErrConnectionLimit) || errors.Is(err, ErrInboundLimit)
}

// warmTransitionLocked applies ev to r's warming state and publishes the
// change, if any, under r.mu so that a peer's events stay in order. link
// is the link concerned (0: none). r.mu must be held.
func (m *ConnectionManager) warmTransitionLocked(r *record, w *warmRecord, ev warming.Event, link LinkID, err error) {
	from := w.state
	to, changed := warming.Next(from, ev)
	if !changed {
		return
	}
	now := m.clock.Now()
	w.state = to
	m.stats.noteWarming(from, to)
	switch to {
	case warming.Warm:
		w.link, w.failures = link, 0
	case warming.Failed:
		w.failures++
		w.lastFailure = now
	}
	if (to == warming.Cold || to == warming.Failed) && w.role == warming.Extra {
		w.role = warming.None // an extra gone cold is no longer one
	}
	logEv := m.log.Debug().Str("peer", r.id.ShortString()).Stringer("from", from).Stringer("to", to)
	if err != nil {
		logEv = logEv.Err(err)
	}
	logEv.Msg("warming")
	m.events.publish(Event{Type: EventWarming, Peer: r.id, Link: link, Warming: warming.Transition{From: from, To: to}, Err: err, Time: now})
}

// warmLinkLostLocked is told by detachLocked of every link that leaves its
// record: a warm peer whose warm link it was is cold again, and a kept one
// is replaced at once. r.mu must be held.
func (m *ConnectionManager) warmLinkLostLocked(r *record, l *link) {
	w := r.warm.Load()
	if w == nil || w.state != warming.Warm || w.link != l.id {
		return
	}
	m.warmTransitionLocked(r, w, warming.LinkLost, l.id, nil)
	if w.role == warming.Kept {
		m.kickWarm()
	}
}

// KeepWarm runs one keep-warm round now, as the loop does every
// Warming.Interval: it chooses the peers to keep warm (and the extras
// that the stream load asks for) with package warming's policy, and
// starts warming those that are not, at most Warming.MaxConcurrent at
// once and never past MaxConnections. It returns how many attempts it
// started, without waiting for them: their outcomes are published as
// EventWarming. With MinWarm and MaxExtra 0 it starts none.
func (m *ConnectionManager) KeepWarm() int {
	if m.usable() != nil {
		return 0
	}
	wm := &m.warm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	now := m.clock.Now()
	cands, recs := wm.cands[:0], wm.recs[:0]
	var load warming.Load
	for _, r := range m.peers.Range {
		if l := r.liveLink.Load(); l != nil {
			if limit := l.sess.Config().MaxStreams; limit > 0 { // an unlimited link has no utilisation
				f := l.sess.Figures()
				load.Links++
				load.Streams += f.Inbound + f.Outbound
				load.Capacity += limit
			}
		}
		r.mu.Lock()
		c, ok := m.warmCandidateLocked(r, now)
		r.mu.Unlock()
		if ok {
			cands = append(cands, c)
			recs = append(recs, r)
		}
	}
	room := warmRoom(m.limits(), int(m.conns.Load()))
	wm.policy.Plan(now, cands, load, room, &wm.plan)
	for i, r := range recs {
		if role := wm.plan.Roles[i]; role != cands[i].Role {
			r.mu.Lock()
			w := warmStateLocked(r)
			w.role = role
			w.kept.Store(role == warming.Kept)
			r.mu.Unlock()
		}
	}
	started := 0
	for _, i := range wm.plan.Start {
		if call, _ := m.beginWarm(m.ctx, recs[i], false); call != nil {
			started++
		}
	}
	clear(recs) // hold no record past the round
	wm.cands, wm.recs = cands[:0], recs[:0]
	return started
}

// warmCandidateLocked returns r as the policy sees it, or false if it is
// not a candidate. Candidates come from the address book: a live address
// to dial, or a link this node dialed (its address may have expired while
// the link lasted). A peer that only dialed us is not one, so that inbound
// dialers, who choose themselves, cannot fill the kept set that idle
// expiry spares. r.mu must be held.
func (m *ConnectionManager) warmCandidateLocked(r *record, now time.Time) (warming.Candidate, bool) {
	l := r.link
	connected := l != nil && !l.dead()
	dialable := r.book.HasDialable(now)
	if r.removed || !(dialable || (connected && !l.inbound)) {
		return warming.Candidate{}, false
	}
	c := warming.Candidate{
		ID:          r.id,
		Connected:   connected,
		Dialable:    dialable,
		CircuitOpen: m.breakers.State(r.id) == breaker.StateOpen,
	}
	if at := r.scoredAt.Load(); at != 0 && now.UnixNano()-at < int64(scoreTTL) {
		c.Score = math.Float64frombits(r.score.Load())
	} else {
		c.Score = m.rescoreLocked(r, now, false).Score
	}
	h := r.hist.Snapshot(now)
	c.Tried = h.Links > 0 || h.Errors > 0
	if w := r.warm.Load(); w != nil {
		c.State, c.Role = w.state, w.role
		c.Failures, c.LastFailure = w.failures, w.lastFailure
		c.Tried = c.Tried || w.failures > 0
	}
	return c, true
}

// warmingString is Event.String for EventWarming.
func warmingString(e Event) string {
	s := fmt.Sprintf("warming %s %s", e.Peer.ShortString(), e.Warming)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}
