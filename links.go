package peerlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/transport"
)

// LinkID names one link for the life of the manager: IDs are never
// reused, so events, snapshots and a link's end can be matched up.
type LinkID uint64

func (id LinkID) String() string { return "link-" + strconv.FormatUint(uint64(id), 10) }

// link is one connection to a peer and its yamux session.
//
// Its life: register makes it the record's link and publishes
// EventConnected; detachLocked takes it off the record (once, under the
// record's lock), gives back its place in the limits and publishes
// EventDisconnected; startClose asks its owner goroutine to close the
// session. The owner closes it, detaches it if nobody did (the remote
// closed, or it failed), waits for its handlers, and closes gone. Only
// the owner ever waits on the link, so no caller of Disconnect, of a
// replacement or of a health close waits for a handler.
type link struct {
	id       LinkID
	peer     peer.ID
	rec      *record
	conn     transport.Conn
	sess     *mux.Session
	health   *health.State
	openedAt time.Time
	inbound  bool // the remote dialed it (conn.Direction, kept for lock-free readers)

	closeOnce sync.Once
	closeReq  chan struct{} // closed by startClose
	gone      chan struct{} // closed once the session ended and its handlers returned

	detached bool // under rec.mu

	marks linkMarks // its use and network group, for idle expiry and trimming (trim.go)
}

func (l *link) dir() transport.Direction {
	if l.inbound {
		return transport.Inbound
	}
	return transport.Outbound
}

func (l *link) dead() bool { return l.sess.Closed() }

// startClose asks the link's owner to close it, and returns at once.
func (l *link) startClose() {
	l.closeOnce.Do(func() { close(l.closeReq) })
}

// waitGone waits until the link's handlers have returned, or ctx ends.
func (l *link) waitGone(ctx context.Context) error {
	select {
	case <-l.gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeLink detaches l from its record with reason r (unless something
// detached it first) and starts closing it. It never waits.
func (m *ConnectionManager) closeLink(l *link, r DisconnectReason, err error) {
	l.rec.mu.Lock()
	m.detachLocked(l.rec, l, r, err)
	l.rec.mu.Unlock()
	l.startClose()
}

// closeRecordLink detaches r's link, if it has one, with reason and err,
// and starts closing it; it returns the link. It never waits.
func (m *ConnectionManager) closeRecordLink(r *record, reason DisconnectReason, err error) *link {
	r.mu.Lock()
	l := r.link
	if l != nil {
		m.detachLocked(r, l, reason, err)
	}
	r.mu.Unlock()
	if l != nil {
		l.startClose()
	}
	return l
}

// detachLocked ends l's tenure as r's link, once: the link no longer
// counts against any limit, the peer's history takes its figures, and
// EventDisconnected is published while r.mu is held, so that per peer a
// link's Disconnected always precedes the next link's Connected. A
// persistent peer that lost its link for a reason other than a local
// decision gets its reconnect loop.
func (m *ConnectionManager) detachLocked(r *record, l *link, reason DisconnectReason, err error) {
	if l.detached {
		return
	}
	l.detached = true
	r.lastLink = lastLink{closed: l.sess.Done(), inbound: l.inbound, at: m.clock.Now()}
	if r.link == l {
		r.link = nil
		r.liveLink.Store(nil)
		m.live.changed()
	}
	m.release(l.dir())
	now := m.clock.Now()
	st := l.sess.Stats()
	m.stats.closed[reason].Inc()
	m.stats.links[dirIndex(l.dir())].Dec()
	r.hist.LinkClosed(now, l.sess.BytesIn(), l.sess.BytesOut(), st.StreamsOpened+st.StreamsAccepted)
	r.lastActive = now
	ev := m.log.Debug().Str("peer", r.id.ShortString()).Stringer("link", l.id).Stringer("direction", l.dir()).Stringer("reason", reason)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg("link closed")
	m.events.publish(Event{
		Type: EventDisconnected, Peer: r.id, Link: l.id, Direction: l.dir(), Addr: l.conn.RemoteAddr().String(),
		Reason: reason, Err: err, Time: now,
	})
	m.warmLinkLostLocked(r, l)
	switch reason {
	case ReasonLocal, ReasonShutdown, ReasonReplaced:
	default:
		m.reconnectLocked(r)
	}
}

// release gives back a link's place in the connection limits.
func (m *ConnectionManager) release(dir transport.Direction) {
	m.conns.Add(-1)
	if dir == transport.Inbound {
		m.inbound.Add(-1)
	}
}

// register makes conn the link of its peer's record (the live one: a
// record removed while the link was on its way is not revived), unless
// the open link wins the tie-break, and starts its session and its owner.
// It never waits for anything but the record's lock.
func (m *ConnectionManager) register(conn transport.Conn) (*link, error) {
	dir := conn.Direction()
	r := m.lockRecord(conn.RemotePeer())
	if dir == transport.Inbound {
		// This is the admitted link arriving, whatever becomes of it:
		// nobody is to wait for it any longer.
		r.admitted = time.Time{}
		// Counted as pending until it holds its slot (or never will).
		defer m.pending.done(r.id)
	}
	if err := m.usable(); err != nil {
		r.mu.Unlock()
		_ = conn.Close()
		return nil, err
	}
	old := m.currentLink(r) // a dead one is detached first, to keep events in order
	if old != nil && !m.keepNew(r, old, dir) {
		r.mu.Unlock()
		_ = conn.Close()
		m.log.Debug().Str("peer", r.id.ShortString()).Msg("duplicate link dropped: the open one wins the tie-break")
		return old, nil
	}
	// A replacement takes the old link's place in the limits.
	lim := m.limits()
	limit, inLimit := lim.MaxConnections, lim.MaxInboundConnections
	if old != nil {
		limit, inLimit = 0, 0
	}
	if !acquire(&m.conns, limit) {
		r.mu.Unlock()
		_ = conn.Close()
		return nil, ErrConnectionLimit
	}
	if dir == transport.Inbound && !acquire(&m.inbound, inLimit) {
		m.conns.Add(-1)
		r.mu.Unlock()
		_ = conn.Close()
		return nil, ErrInboundLimit
	}
	sess, err := mux.NewSession(conn, m.id, r.id, dir == transport.Outbound, m.linkMuxConfig(conn), m.route)
	if err != nil {
		m.release(dir)
		r.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("peerlink: start session with %s: %w", r.id.ShortString(), err)
	}
	if old != nil {
		m.detachLocked(r, old, ReasonReplaced, nil)
	}
	now := m.clock.Now()
	l := &link{
		id: LinkID(m.nextLink.Add(1)), peer: r.id, rec: r, conn: conn, sess: sess,
		health: m.cfg.Health.NewState(now), openedAt: now, inbound: dir == transport.Inbound,
		closeReq: make(chan struct{}), gone: make(chan struct{}),
	}
	r.link = l
	r.liveLink.Store(l)
	m.live.changed()
	m.stats.opened[dirIndex(dir)].Inc()
	m.stats.links[dirIndex(dir)].Inc()
	if rtt := conn.HandshakeRTT(); rtt > 0 {
		m.stats.handshake.Record(rtt)
	}
	r.lastActive = now
	r.hist.LinkOpened(now)
	if rtt := conn.HandshakeRTT(); rtt > 0 {
		r.hist.ObserveRTT(rtt, now)
	}
	addr := conn.RemoteAddr().String()
	if dir == transport.Inbound {
		r.book.Add(addr, peerstore.SourceInbound, m.cfg.AddrTTL, now)
	}
	if r.linkWait != nil {
		close(r.linkWait)
		r.linkWait = nil
	}
	if call := r.dial; call != nil && !call.secured {
		// An inbound link from a peer we are still trying to reach: it
		// satisfies our dial's waiters. The dial itself goes on: called
		// off mid-handshake, it could leave the remote holding a link we
		// dropped; if it completes, both ends keep the same one of the
		// two by the tie-break.
		call.resolve(l, nil)
	}
	m.log.Debug().Str("peer", r.id.ShortString()).Stringer("link", l.id).Str("addr", addr).Stringer("direction", dir).Msg("link open")
	m.events.publish(Event{Type: EventConnected, Peer: r.id, Link: l.id, Direction: dir, Addr: addr, Time: now})
	m.mu.Lock() // orders linkWG.Add with Close's Wait
	m.linkWG.Add(1)
	m.mu.Unlock()
	r.mu.Unlock()

	if old != nil {
		old.startClose()
	}
	go m.own(l)
	m.noteLinkAdded()
	return l, nil
}

// acquire takes a slot under limit in counter, or reports false.
func acquire(counter *atomic.Int64, limit int) bool {
	for {
		n := counter.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if counter.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// linkMuxConfig sizes the session of a new link: its stream window from
// the RTT its handshake measured, and its stream limit to the memory
// budget (see window.go).
func (m *ConnectionManager) linkMuxConfig(conn transport.Conn) mux.Config {
	mc := m.muxCfg
	if m.cfg.TargetBandwidth > 0 {
		mc.StreamWindow = streamWindow(conn.HandshakeRTT(), m.cfg.TargetBandwidth, m.cfg.MaxStreamWindow)
	}
	mc.MemoryBudget = max(m.cfg.PeerMemoryBudget, 0) // the session fits its stream limit to it
	return mc
}

// own is the link's owner: the one goroutine that closes its session and
// waits for its handlers. It runs from register until the link is gone.
func (m *ConnectionManager) own(l *link) {
	defer m.linkWG.Done()
	select {
	case <-l.sess.Done():
	case <-l.closeReq:
	}
	l.sess.StartClose()
	<-l.sess.Done() // the transport bounds the socket's close
	reason, err := ReasonError, l.sess.Err()
	if isCleanClose(err) {
		reason, err = ReasonRemote, nil
	}
	r := l.rec
	r.mu.Lock()
	m.detachLocked(r, l, reason, err)
	r.mu.Unlock()

	// The record stays: it has a history now, and the pruner judges it.
	_ = l.sess.Wait(context.Background())
	close(l.gone)
}

// isCleanClose reports whether a session ended because the remote closed
// the link in an orderly way.
func isCleanClose(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// acceptLoop hands each admitted inbound link to register, which never
// waits for a handler, so one busy peer cannot hold up another's link.
func (m *ConnectionManager) acceptLoop(ln transport.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.closed.Load() || m.draining.Load() {
				return
			}
			m.log.Debug().Err(err).Msg("accept")
			continue
		}
		if _, err := m.register(conn); err != nil {
			id := conn.RemotePeer()
			m.log.Debug().Err(err).Str("peer", id.ShortString()).Msg("inbound link not registered")
			if r, ok := m.peers.Get(id); ok {
				r.mu.Lock()
				m.dropIfUnused(r)
				r.mu.Unlock()
			}
		}
	}
}

// Disconnect starts closing the link to id and returns without waiting
// for anything: when it returns, the link no longer counts in
// ConnectionCount or against any limit, Status no longer reports it
// connected, and EventDisconnected (ReasonLocal) has been published. The
// link's stream handlers see their streams closed and their Context
// cancelled; DisconnectAndWait also waits for them to return. Safe to
// call from inside a handler, including one of the link's own.
func (m *ConnectionManager) Disconnect(id peer.ID) error {
	_, err := m.disconnect(id)
	return err
}

func (m *ConnectionManager) disconnect(id peer.ID) (*link, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	var l *link
	if r, ok := m.peers.Get(id); ok {
		l = m.closeRecordLink(r, ReasonLocal, nil)
	}
	if l == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	return l, nil
}

// DisconnectAndWait is Disconnect, then waits until the link is fully
// gone: its socket closed and its handlers returned. ctx bounds the wait
// (the link still closes). Called from one of the link's own handlers it
// waits for that handler too, so only until ctx ends.
func (m *ConnectionManager) DisconnectAndWait(ctx context.Context, id peer.ID) error {
	l, err := m.disconnect(id)
	if err != nil {
		return err
	}
	return l.waitGone(ctx)
}
