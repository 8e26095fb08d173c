package peerlink

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/warming"
)

// record is the manager's one long-lived record of a peer: its address
// book, its history (RTTs, errors, links, bytes) and its links and dials.
// Links come and go; the record stays while the peer is connected,
// dialed, persistent, has a live address, or was active within
// Config.RecordRetention, so that what was learnt of a peer survives a
// re-dial. Its circuit breaker lives in the manager's breaker registry
// and is removed with it.
//
// mu guards every field but id. A record removed from the table is
// marked removed, so that a caller still holding it fetches the new one.
type record struct {
	id peer.ID

	mu       sync.Mutex
	book     peerstore.AddrBook
	hist     peerstore.History
	link     *link     // the open link, if any
	dial     *dialCall // the dial in flight, if any
	linkWait chan struct{}
	// admitted is when an inbound link from the peer passed admission; the
	// dialer already counts it as open, so until it is registered here (or
	// HandshakeTimeout passes) callers wait for it rather than dial.
	admitted time.Time
	// persistent peers are redialed when their link drops; reconnecting
	// is set while their reconnect loop runs.
	persistent   bool
	reconnecting bool
	// lastLink is what staleAtRemote needs of the last link detached.
	lastLink lastLink
	removed  bool
	// lastActive is when the peer was last added, connected or
	// disconnected: the retention clock starts there.
	lastActive time.Time
	// app is the application's value for the peer, in [−1, 1].
	app float64
	// The score as last computed (float64 bits) and when (clock
	// nanoseconds), and the peak RTT then: QualityScore and SelectBest
	// read them without the lock.
	score    atomic.Uint64
	scoredAt atomic.Int64
	rttPeak  atomic.Int64 // nanoseconds
	// liveLink mirrors link for readers without the lock (SelectBest);
	// inflight counts the SelectBest picks not yet Done.
	liveLink atomic.Pointer[link]
	inflight atomic.Int32
	// inflightStarts sums the start times of the picks in flight
	// (nanoseconds since the manager's epoch), whose mean age tells of a
	// peer that stopped answering before any request has failed.
	inflightStarts atomic.Int64
	// The recent failure share (see noteOutcomeLocked; float64 bits as of
	// recentAt, clock nanoseconds): written under mu, read by SelectBest
	// without it.
	recentFail atomic.Uint64
	recentAt   atomic.Int64
	// openUntil mirrors the peer's circuit for SelectBest: while the clock
	// (nanoseconds) is before it, the circuit is open. Set by the
	// breaker's transitions; gobreaker leaves the open state lazily, and
	// this passes with OpenTimeout as it would.
	openUntil atomic.Int64
	// warm is the peer's warming state (warm.go), nil until first needed.
	warm atomic.Pointer[warmRecord]
	// tags are the application's protection and tags (protect.go); nil
	// for a peer it never tagged.
	tags *peerTags
}

// lastLink is what a record keeps of its last link once detached: not
// the link itself, which would keep its session's memory.
type lastLink struct {
	closed  <-chan struct{} // closed once its session has ended (our socket closed)
	inbound bool            // the peer dialed it
	at      time.Time       // when it was detached
}

// pendingInbound returns a channel closed when the next link registers, and
// until when to wait for it, if an admitted inbound link is on its way.
// r.mu must be held.
func (r *record) pendingInbound(now time.Time, timeout time.Duration) (<-chan struct{}, time.Time) {
	if r.admitted.IsZero() {
		return nil, time.Time{}
	}
	until := r.admitted.Add(timeout)
	if !now.Before(until) {
		r.admitted = time.Time{} // it never arrived: the handshake failed late
		return nil, time.Time{}
	}
	return r.nextLink(), until
}

// nextLink returns a channel that register closes when a link is set.
// r.mu must be held.
func (r *record) nextLink() <-chan struct{} {
	if r.linkWait == nil {
		r.linkWait = make(chan struct{})
	}
	return r.linkWait
}

// busy reports whether the record has a link, a dial or an admitted link
// on its way, or is kept connected. r.mu must be held.
func (r *record) busy() bool {
	return r.link != nil || r.dial != nil || !r.admitted.IsZero() || r.persistent || r.reconnecting || r.tags.protected()
}

// AddPeer records a peer's addresses in the address book without dialing.
// They expire after Config.AddrTTL unless a dial on them succeeds.
func (m *ConnectionManager) AddPeer(info peer.AddrInfo) error {
	r, err := m.addToBook(info, peerstore.SourceManual)
	if err != nil {
		return err
	}
	r.mu.Unlock()
	return nil
}

// addToBook checks info, merges its addresses into the peer's record, and
// returns the record with its mutex held.
func (m *ConnectionManager) addToBook(info peer.AddrInfo, src peerstore.Source) (*record, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	if err := m.checkPeer(info); err != nil {
		return nil, err
	}
	r := m.lockRecord(info.ID)
	now := m.clock.Now()
	ttl := m.cfg.AddrTTL
	if src == peerstore.SourcePersistent {
		ttl = 0 // never expires
	}
	// Reversed, so that the first address given ends up newest.
	for i := len(info.Addrs) - 1; i >= 0; i-- {
		r.book.Add(info.Addrs[i], src, ttl, now)
	}
	r.lastActive = now
	return r, nil
}

func (m *ConnectionManager) checkPeer(info peer.AddrInfo) error {
	if err := info.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPeer, err)
	}
	if info.ID == m.id {
		return ErrDialSelf
	}
	return nil
}

// lockRecord returns the peer's record, created if absent, with its mutex
// held.
func (m *ConnectionManager) lockRecord(id peer.ID) *record {
	for {
		r, _ := m.peers.LoadOrCreate(id, func() *record {
			r := &record{id: id, lastActive: m.clock.Now()}
			r.hist.Init(&m.histCfg)
			return r
		})
		r.mu.Lock()
		if !r.removed {
			return r
		}
		r.mu.Unlock()
	}
}

// dropIfUnused removes a record that holds nothing worth keeping: no link
// or dial, no address, never connected. Without it every ID that merely
// knocked (a refused inbound link, an OpenStream to an unknown peer)
// would wait for the pruner. r.mu must be held.
func (m *ConnectionManager) dropIfUnused(r *record) {
	if r.removed || r.busy() || r.book.Len() > 0 || r.hist.Snapshot(r.lastActive).Links > 0 {
		return
	}
	m.removeLocked(r)
}

// removeLocked takes the record out of the table, and its breaker with
// it. r.mu must be held.
func (m *ConnectionManager) removeLocked(r *record) {
	r.removed = true
	if w := r.warm.Load(); w != nil && w.state == warming.Failed {
		// A failed peer forgotten; a warm or warming one goes cold when
		// its link or attempt ends.
		w.state = warming.Cold
		m.stats.noteWarming(warming.Failed, warming.Cold)
	}
	m.peers.DeleteIf(r.id, func(v *record) bool { return v == r })
	m.breakers.Remove(r.id)
}

// RemovePeer forgets id at once: its addresses, history and breaker. A
// persistent peer stops being one, and an open link is closed as by
// Disconnect (without waiting for its handlers).
func (m *ConnectionManager) RemovePeer(id peer.ID) {
	r, ok := m.peers.Get(id)
	if !ok {
		return
	}
	r.mu.Lock()
	r.persistent = false
	l := r.link
	if l != nil {
		m.detachLocked(r, l, ReasonLocal, nil)
	}
	if call := r.dial; call != nil {
		call.cancel()
	}
	m.removeLocked(r)
	r.mu.Unlock()
	if l != nil {
		l.startClose()
	}
}

// KnownPeers returns how many peer records the manager holds: connected
// peers, peers being dialed, persistent peers, peers with a live address
// and peers seen within Config.RecordRetention.
func (m *ConnectionManager) KnownPeers() int { return m.peers.Len() }

// PeerAddrs returns the addresses the book holds for id, with where each
// came from and when it expires.
func (m *ConnectionManager) PeerAddrs(id peer.ID) []peerstore.Addr {
	r, ok := m.peers.Get(id)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.book.Addrs()
}

// PeerHistory returns what the manager has learnt of id across all its
// links: RTTs, errors, links and reconnects, time connected, bytes and
// streams.
func (m *ConnectionManager) PeerHistory(id peer.ID) (peerstore.HistorySnapshot, bool) {
	r, ok := m.peers.Get(id)
	if !ok {
		return peerstore.HistorySnapshot{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hist.Snapshot(m.clock.Now()), true
}

// PruneRecords removes the records that are no longer worth keeping, as
// the pruner does every Config.PruneInterval, and returns how many it
// removed: expired addresses go first; then a record goes when its peer
// has no link or dial, is not persistent, has no live dialable address,
// and has not been active for Config.RecordRetention. An admitted inbound
// link that never arrived is given up after HandshakeTimeout.
func (m *ConnectionManager) PruneRecords() int {
	now := m.clock.Now()
	removed := 0
	for _, r := range m.peers.Range {
		r.mu.Lock()
		r.book.Expire(now)
		if !r.admitted.IsZero() && now.Sub(r.admitted) >= m.cfg.HandshakeTimeout {
			r.admitted = time.Time{}
		}
		if !r.book.HasDialable(now) && peerstore.Prunable(peerstore.PruneInput{
			Connected:  r.link != nil || !r.admitted.IsZero(),
			Dialing:    r.dial != nil || r.reconnecting,
			Persistent: r.persistent,
			Protected:  r.tags.protected(),
			LastActive: r.lastActive,
		}, now, m.cfg.RecordRetention) {
			m.removeLocked(r)
			removed++
		}
		r.mu.Unlock()
	}
	if removed > 0 {
		m.log.Debug().Int("removed", removed).Int("kept", m.peers.Len()).Msg("records pruned")
	}
	return removed
}

// pruneLoop runs PruneRecords every PruneInterval until Close.
func (m *ConnectionManager) pruneLoop() {
	t := m.clock.NewTimer(m.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			m.PruneRecords()
			t.Reset(m.cfg.PruneInterval)
		case <-m.ctx.Done():
			return
		}
	}
}
