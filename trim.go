package peerlink

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/trim"
)

// Trimming: past the high water mark the manager closes links down to the
// low water mark, lowest trim priority first (package trim: ScorePoints ×
// quality score + the peer's tags), in a goroutine of its own, so that
// the registration or call that crossed the mark never waits for it.

// Defaults of TrimConfig.
const (
	DefaultGracePeriod   = time.Minute
	DefaultSilencePeriod = 10 * time.Second
	DefaultMinOutbound   = 8
	DefaultMaxPerSubnet  = 16
)

// ErrHighWater is the reason an inbound link is refused while the node
// holds Trim.HighWater links or more (its dialer sees it in the
// admission verdict, as a transport.RemoteRefusedError with code
// RefusalLimit): only the link that starts a trim may pass the mark. It
// wraps ErrConnectionLimit.
var ErrHighWater = fmt.Errorf("%w: past the high water mark", ErrConnectionLimit)

// TrimConfig sets the watermarks and the rules of trimming. Zero fields
// take the defaults; negative ones turn their rule off.
//
// Past HighWater links the manager closes links down to LowWater, lowest
// priority first: ScorePoints (100) × the peer's QualityScore plus the sum
// of its tag values (TagPeer, decaying tags), so quality decides unless
// tags say otherwise; a tag of 10 weighs as much as a tenth of the score.
// It never closes a protected peer (Protect), a persistent one, or a link
// younger than GracePeriod, and trims at most once per SilencePeriod.
//
// Back pressure keeps the count from staying above HighWater however fast
// links arrive: an inbound link that would take the count past HighWater
// is admitted only if a trim may start at once (and it starts it); any
// other is refused with ErrHighWater, which its dialer is told, unless
// its peer is protected or persistent. So the count passes HighWater by
// at most one inbound link, plus the links the node dials itself and
// those of protected and persistent peers (which only the hard limits
// bound). Links in their grace period neither go nor count against
// LowWater (as in go-libp2p: a burst of newcomers must not push out the
// peers that have shown their worth), so a trim may leave the count
// above HighWater; it is retried every SilencePeriod, and the count is
// back under HighWater within GracePeriod + SilencePeriod. A node that
// refuses inbound links at MaxConnections or MaxInboundConnections trims
// down to LowWater too (once per SilencePeriod), so that a node full of
// idle squatters makes room.
//
// The watermarks sit under the hard limits: LowWater < HighWater ≤
// MaxConnections. The hard limits refuse; the watermarks trim.
type TrimConfig struct {
	// HighWater is the link count past which the node trims. 0 means
	// half of MaxConnections (200 of the default 400), or no trimming
	// when MaxConnections is 0 (unlimited) or below 4; negative: no
	// trimming.
	HighWater int
	// LowWater is what a trim brings the count down to; 0 means four
	// fifths of HighWater (160 of 200).
	LowWater int
	// GracePeriod protects a new link from trims, long enough to earn a
	// score (1 min, go-libp2p's); negative: none.
	GracePeriod time.Duration
	// SilencePeriod is the least time between two trims (10 s,
	// go-libp2p's); negative: none. TrimOpenConns and
	// SetConnectionLimits do not wait for it.
	SilencePeriod time.Duration
	// MinOutbound: a trim never leaves fewer outbound links than this
	// (8, as Bitcoin Core keeps 8 outbound links): those are the peers
	// this node chose, which an attacker flooding it with inbound links
	// cannot fill. Negative: no floor.
	MinOutbound int
	// MaxPerSubnet: links from one subnet (IPv4 /24, IPv6 /64) beyond
	// this many are trimmed before any other link (16), the subnet's
	// protected and young links taking its places first, then its best:
	// a subnet that crowds in cannot push out the peers of subnets that
	// did not. It refuses nothing. Negative: subnets make no difference.
	MaxPerSubnet int
}

// trimState is the manager's trimming and limits state.
type trimState struct {
	limits   atomic.Pointer[ConnectionLimits] // the limits in force (limits.go)
	caps     limitCaps                        // what the process can hold (limits.go)
	lastTrim atomic.Int64                     // clock Unix nanoseconds of the last trim's start; 0: none yet
	// kick wakes the upkeep goroutine; forced makes its next check trim
	// without waiting for the silence period (SetConnectionLimits); full
	// tells it an inbound link was refused at a hard limit.
	kick   chan struct{}
	forced atomic.Bool
	full   atomic.Bool
	// run is held by the trim in progress: one at a time.
	run chan struct{}

	trims   atomic.Uint64 // trims run
	refused atomic.Uint64 // inbound links refused at the high water mark
	tags    tagRegistry   // decaying tags (protect.go)
}

// TrimStatistics count trims (Statistics.Trim). The links they closed are
// Statistics.Connections.Closed["trimmed"].
type TrimStatistics struct {
	// Trims counts the trims run: past the high water mark, on a hard
	// limit, by TrimOpenConns or SetConnectionLimits, whether or not they
	// found a link to close.
	Trims uint64
	// HighWaterRefusals counts the inbound links refused with
	// ErrHighWater.
	HighWaterRefusals uint64
}

func (m *ConnectionManager) trimStatistics() TrimStatistics {
	return TrimStatistics{Trims: m.trim.trims.Load(), HighWaterRefusals: m.trim.refused.Load()}
}

// linkMarks are what trimming and idle expiry note of a link.
type linkMarks struct {
	usedAt atomic.Int64 // clock Unix nanoseconds of its last stream opened or ended; 0: none
	busy   atomic.Bool  // streams were open when idle expiry last looked
	group  atomic.Uint64
}

// subnet returns the link's network group for Trim.MaxPerSubnet: a hash
// of its remote /24 (IPv4) or /64 (IPv6), or of its whole address for a
// transport without IP addresses. It is computed once per link.
func (l *link) subnet() uint64 {
	if g := l.marks.group.Load(); g != 0 {
		return g
	}
	g := subnetOf(l.conn.RemoteAddr()) | 1 // 0 means not computed
	l.marks.group.Store(g)
	return g
}

func subnetOf(a net.Addr) uint64 {
	h := fnv.New64a()
	var ip netip.Addr
	if t, ok := a.(*net.TCPAddr); ok {
		ip = t.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	if !ip.IsValid() {
		_, _ = h.Write([]byte(a.String()))
		return h.Sum64()
	}
	ip = ip.Unmap().WithZone("")
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	b, _ := p.MarshalBinary()
	_, _ = h.Write(b)
	return h.Sum64()
}

// lastTrim returns when the last trim started (the zero time: never).
func (m *ConnectionManager) lastTrim() time.Time {
	if t := m.trim.lastTrim.Load(); t != 0 {
		return time.Unix(0, t)
	}
	return time.Time{}
}

// kickTrim wakes the upkeep goroutine to check the count. It never waits.
func (m *ConnectionManager) kickTrim() {
	select {
	case m.trim.kick <- struct{}{}:
	default:
	}
}

// noteLinkAdded is register's check, O(1): past the high water mark, the
// upkeep goroutine is woken to trim.
func (m *ConnectionManager) noteLinkAdded() {
	if m.limits().watermarks().Over(int(m.conns.Load())) {
		m.kickTrim()
	}
}

// highWaterRefusal is the admission rule for a new inbound link from r's
// peer, given the inbound links admitted and not yet registered
// (trim.Watermarks.Admit). A protected or persistent peer is never
// refused by the watermarks: a trim would not close its link either.
// r.mu must be held.
func (m *ConnectionManager) highWaterRefusal(r *record, pending int64, now time.Time) error {
	if trimExempt(r) || m.limits().watermarks().Admit(int(m.conns.Load()+pending), now, m.lastTrim()) {
		return nil
	}
	m.trim.refused.Add(1)
	return transport.Refuse(transport.RefusalLimit, ErrHighWater)
}

// refuseFull refuses an inbound link at a hard limit, and asks for a trim
// down to the low water mark: a node full of links that do nothing must
// make room, or it would refuse every newcomer for ever.
func (m *ConnectionManager) refuseFull(err error) error {
	m.trim.full.Store(true)
	m.kickTrim()
	return transport.Refuse(transport.RefusalLimit, err)
}

// trimExempt reports whether r's link is never trimmed. r.mu must be
// held. (The peers kept warm are not exempt: they were chosen by score,
// so a trim rarely picks one, and when shrunk limits make it, warming
// fills no further than the high water mark, so it cannot undo it.)
func trimExempt(r *record) bool {
	return r.persistent || r.tags.protected()
}

// upkeep is the goroutine that trims (when woken, and while the count
// stays above the high water mark) and runs the idle and unhealthy
// cleanup every Idle.CleanupInterval, until Close.
func (m *ConnectionManager) upkeep() {
	var cleanup, retry clock.Timer
	var cleanupC, retryC <-chan time.Time
	if iv := m.cfg.Idle.CleanupInterval; iv > 0 {
		cleanup = m.clock.NewTimer(iv)
		defer cleanup.Stop()
		cleanupC = cleanup.C()
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.trim.kick:
		case <-retryC:
		case <-cleanupC:
			m.EvictIdle()
			m.EvictUnhealthy()
			cleanup.Reset(m.cfg.Idle.CleanupInterval)
		}
		if wait := m.autoTrim(); wait > 0 {
			if retry == nil {
				retry = m.clock.NewTimer(wait)
				retryC = retry.C()
			} else {
				retry.Reset(wait)
			}
		}
	}
}

// autoTrim trims if the count calls for it and a trim is due, and returns
// how long to wait before checking again (0: until woken).
func (m *ConnectionManager) autoTrim() time.Duration {
	lim := m.limits()
	w := lim.watermarks()
	forced, full := m.trim.forced.Swap(false), m.trim.full.Swap(false)
	n := int(m.conns.Load())
	toLow := w.Over(n) || (full && w.High > 0 && n > w.Low)
	overHard := lim.overHard(n, int(m.inbound.Load()))
	if !toLow && !overHard {
		return 0
	}
	now := m.clock.Now()
	if !forced && !overHard {
		if ok, wait := w.Due(now, m.lastTrim()); !ok {
			return wait
		}
	}
	select {
	case m.trim.run <- struct{}{}:
	case <-m.ctx.Done():
		return 0
	}
	m.trimLocked(now, lim, toLow)
	<-m.trim.run
	if w.Over(int(m.conns.Load())) {
		// Protected and young links held the count up: try again once
		// the silence period has passed, when more may be out of grace.
		return max(lim.Trim.SilencePeriod, time.Second)
	}
	return 0
}

// TrimOpenConns closes links now, as a trim past the high water mark
// does, down to Trim.LowWater (and to the hard limits), whatever the
// silence period, and returns how many it closed (their closes started;
// their EventDisconnected, ReasonTrimmed, published). Protected and
// persistent peers and links in their grace period are never closed, so
// fewer may go. It never waits for a link's handlers, so it is safe from
// inside a stream handler; ctx bounds only the wait for a trim already
// in progress. With no watermarks (Trim.HighWater negative) it enforces
// only the hard limits.
func (m *ConnectionManager) TrimOpenConns(ctx context.Context) (int, error) {
	if err := m.usable(); err != nil {
		return 0, err
	}
	select {
	case m.trim.run <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-m.trim.run }()
	return m.trimLocked(m.clock.Now(), m.limits(), true), nil
}

// trimLocked runs one trim at now under lim: down to the low water mark if
// toLow, and to the hard limits in any case. m.trim.run must be held.
func (m *ConnectionManager) trimLocked(now time.Time, lim *ConnectionLimits, toLow bool) int {
	m.trim.lastTrim.Store(now.UnixNano())
	m.trim.trims.Add(1)
	cands, links := m.trimCandidates(now)
	victims := lim.trimPolicy(toLow).Victims(now, cands, nil)
	closed := 0
	for _, i := range victims {
		if m.closeIf(links[i], ReasonTrimmed, nil, trimExempt) {
			closed++
		}
	}
	if closed > 0 || len(victims) > 0 {
		m.log.Info().Int("links", len(cands)).Int("closed", closed).Int("low_water", lim.Trim.LowWater).
			Int("high_water", lim.Trim.HighWater).Msg("links trimmed")
	}
	return closed
}

// trimCandidates snapshots the open links for the policy: each with its
// peer's trim priority (score and tags as of now), direction, age, subnet
// and exemption.
func (m *ConnectionManager) trimCandidates(now time.Time) ([]trim.Candidate, []*link) {
	n := int(m.conns.Load()) + 8
	cands := make([]trim.Candidate, 0, n)
	links := make([]*link, 0, n)
	for _, r := range m.peers.Range {
		if r.liveLink.Load() == nil {
			continue
		}
		r.mu.Lock()
		l := r.link
		if l == nil || l.dead() {
			r.mu.Unlock()
			continue
		}
		score, fresh := cachedScore(r, now)
		if !fresh {
			score = m.rescoreLocked(r, now, false).Score
		}
		keep := trimExempt(r)
		tags := r.tags.sum(now)
		r.mu.Unlock()
		cands = append(cands, trim.Candidate{
			Peer: r.id, Priority: trim.Priority(score, tags), Inbound: l.inbound, Opened: l.openedAt,
			Group: l.subnet(), Keep: keep,
		})
		links = append(links, l)
	}
	return cands, links
}

// closeIf detaches l with reason and err and starts its close, unless it
// is no longer its peer's link or exempt (with r.mu held) says to keep
// it; it reports whether it closed it. It never waits.
func (m *ConnectionManager) closeIf(l *link, reason DisconnectReason, err error, exempt func(*record) bool) bool {
	r := l.rec
	r.mu.Lock()
	ok := r.link == l && !l.detached && (exempt == nil || !exempt(r))
	if ok {
		m.detachLocked(r, l, reason, err)
	}
	r.mu.Unlock()
	if ok {
		l.startClose()
	}
	return ok
}
