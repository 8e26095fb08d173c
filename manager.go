package peerlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// ConnectionManager keeps one authenticated, multiplexed link per peer and
// opens streams over it. It is safe for concurrent use.
//
// Goroutines: the manager owns one accept loop per listener, one goroutine
// per dial in flight and one watcher per open link (each yamux session adds
// its own, which mux owns). Close stops them all and waits for them.
type ConnectionManager struct {
	cfg      Config
	id       peer.ID
	log      zerolog.Logger
	tr       transport.Transport
	muxCfg   mux.Config
	peers    *peer.Table[*entry]
	events   eventBus
	breakers *breaker.Registry

	handlers sync.Map // protocol string → mux.Handler

	// ctx is the parent of every dial; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // guards listeners, and orders wg.Add with Close
	listeners []transport.Listener
	closed    atomic.Bool // set under mu
	wg        sync.WaitGroup

	conns   atomic.Int64 // open links, both directions
	inbound atomic.Int64 // open links the remote dialed
	pending *pendingAdmissions
}

// entry is one peer's slot in the table. Its mutex guards every field but
// id; an entry removed from the table is marked removed so that a caller
// still holding it fetches the new one instead.
type entry struct {
	id peer.ID

	mu       sync.Mutex
	addrs    []string
	link     *link     // the open link, if any
	draining *link     // a link being closed by Disconnect
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
	removed      bool
}

// pendingInbound returns a channel closed when the next link registers, and
// until when to wait for it, if an admitted inbound link is on its way.
// e.mu must be held.
func (e *entry) pendingInbound(timeout time.Duration) (<-chan struct{}, time.Time) {
	if e.admitted.IsZero() {
		return nil, time.Time{}
	}
	until := e.admitted.Add(timeout)
	if !time.Now().Before(until) {
		e.admitted = time.Time{} // it never arrived: the handshake failed late
		return nil, time.Time{}
	}
	return e.nextLink(), until
}

// nextLink returns a channel that register closes when a link is set.
// e.mu must be held.
func (e *entry) nextLink() <-chan struct{} {
	if e.linkWait == nil {
		e.linkWait = make(chan struct{})
	}
	return e.linkWait
}

// dialCall is one dial in flight; every Connect for the peer waits on it.
type dialCall struct {
	done chan struct{}
	link *link
	err  error
}

// link is one open connection to a peer and its yamux session.
type link struct {
	peer     peer.ID
	conn     transport.Conn
	sess     *mux.Session
	health   *health.State
	openedAt time.Time
	reason   atomic.Uint32         // DisconnectReason chosen by a local close
	why      atomic.Pointer[error] // and the error behind it, if any
}

func (l *link) dir() transport.Direction { return l.conn.Direction() }

func (l *link) dead() bool {
	select {
	case <-l.sess.Done():
		return true
	default:
		return false
	}
}

// close records why the link is being closed (the first reason wins) and
// closes it.
func (l *link) close(r DisconnectReason) { l.closeWith(r, nil) }

func (l *link) closeWith(r DisconnectReason, err error) {
	if l.reason.CompareAndSwap(uint32(ReasonNone), uint32(r)) && err != nil {
		l.why.Store(&err)
	}
	_ = l.sess.Close()
}

// New returns a manager listening on cfg.ListenAddrs.
func New(cfg Config) (*ConnectionManager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Identity == nil {
		if cfg.Identity, err = peer.GenerateIdentity(); err != nil {
			return nil, err
		}
	}
	m := &ConnectionManager{
		cfg:   cfg,
		id:    cfg.Identity.ID(),
		peers: peer.NewTable[*entry](0),
	}
	m.pending = newPendingAdmissions(cfg.HandshakeTimeout)
	m.log = cfg.Logger.With().Str("component", "peerlink").Str("self", m.id.ShortString()).Logger()
	m.muxCfg = cfg.muxConfig(m.log)
	if cfg.MaxStreams > 0 {
		reserved := cfg.ReservedStreams
		if reserved > 0 && cfg.MaxStreamsPerPeer > 0 { // the same fraction as per peer
			reserved = (cfg.MaxStreams*reserved + cfg.MaxStreamsPerPeer - 1) / cfg.MaxStreamsPerPeer
		}
		m.muxCfg.GlobalSlots = mux.NewSlotPool(cfg.MaxStreams, mux.ReservedSlots(cfg.MaxStreams, reserved))
	}
	if err := m.newBreakers(); err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.tr, err = cfg.Transport(transport.Config{
		Identity:             cfg.Identity,
		Network:              cfg.Network,
		HandshakeTimeout:     cfg.HandshakeTimeout,
		MaxPendingHandshakes: cfg.MaxPendingHandshakes,
		NotSentLowat:         cfg.NotSentLowat,
		Gater:                &admission{m: m, user: cfg.Gater},
		Logger:               m.log,
	})
	if err != nil {
		m.cancel()
		if errors.Is(err, transport.ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return nil, fmt.Errorf("peerlink: transport: %w", err)
	}
	for _, addr := range cfg.ListenAddrs {
		if err := m.Listen(addr); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	if !cfg.DisableHealthMonitor {
		if err := m.startHealthMonitor(); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	for _, info := range cfg.PersistentPeers {
		if err := m.AddPersistentPeer(info); err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("%w: PersistentPeers: %w", ErrInvalidConfig, err)
		}
	}
	return m, nil
}

// ID returns the node's own peer ID.
func (m *ConnectionManager) ID() peer.ID { return m.id }

// Listen starts accepting links on addr (for TCP, "host:port"; port 0
// picks a free one, which Addrs then reports).
func (m *ConnectionManager) Listen(addr string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	ln, err := m.tr.Listen(addr)
	if err != nil {
		return fmt.Errorf("peerlink: listen %s: %w", addr, err)
	}
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	m.listeners = append(m.listeners, ln)
	m.wg.Add(1)
	m.mu.Unlock()
	m.log.Info().Str("addr", ln.Addr().String()).Msg("listening")
	go func() {
		defer m.wg.Done()
		m.acceptLoop(ln)
	}()
	return nil
}

// Addrs returns the addresses the manager listens on.
func (m *ConnectionManager) Addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.listeners))
	for i, ln := range m.listeners {
		out[i] = ln.Addr().String()
	}
	return out
}

// AddrInfo returns the node's ID and listen addresses, which is what
// another node needs to Connect to it.
func (m *ConnectionManager) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: m.id, Addrs: m.Addrs()}
}

// AddPeer records a peer's addresses in the address book without dialing.
func (m *ConnectionManager) AddPeer(info peer.AddrInfo) error {
	e, err := m.addToBook(info)
	if err != nil {
		return err
	}
	e.mu.Unlock()
	return nil
}

// addToBook checks info, merges its addresses into the peer's entry, and
// returns the entry with its mutex held.
func (m *ConnectionManager) addToBook(info peer.AddrInfo) (*entry, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := m.checkPeer(info); err != nil {
		return nil, err
	}
	e := m.lockEntry(info.ID)
	e.addAddrs(info.Addrs)
	return e, nil
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

// addAddrs merges addrs into the entry's address book, newest first, at
// most maxAddrsPerPeer. e.mu must be held.
func (e *entry) addAddrs(addrs []string) {
	for _, a := range slices.Backward(addrs) {
		if i := slices.Index(e.addrs, a); i >= 0 {
			e.addrs = slices.Delete(e.addrs, i, i+1)
		}
		e.addrs = slices.Insert(e.addrs, 0, a)
	}
	if len(e.addrs) > maxAddrsPerPeer {
		e.addrs = e.addrs[:maxAddrsPerPeer]
	}
}

// lockEntry returns the peer's entry, created if absent, with its mutex
// held.
func (m *ConnectionManager) lockEntry(id peer.ID) *entry {
	for {
		e, _ := m.peers.LoadOrCreate(id, func() *entry { return &entry{id: id} })
		e.mu.Lock()
		if !e.removed {
			return e
		}
		e.mu.Unlock()
	}
}

// forget drops the entry of a peer the manager has no reason to remember:
// no link, no dial, no address. Without it every inbound peer ID, however
// short its visit, would stay in the table. e.mu must be held.
func (m *ConnectionManager) forget(e *entry) {
	if e.link != nil || e.draining != nil || e.dial != nil || len(e.addrs) > 0 || !e.admitted.IsZero() || e.persistent {
		return
	}
	e.removed = true
	m.peers.DeleteIf(e.id, func(v *entry) bool { return v == e })
	m.breakers.Remove(e.id)
}

// spawn runs f in a goroutine the manager owns, unless Close has begun.
func (m *ConnectionManager) spawn(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// Connect makes sure there is a link to info.ID, dialing if needed. The
// addresses in info are added to the address book first; with none given,
// the book's are used. Concurrent calls for one peer share one dial; ctx
// bounds only this caller's wait.
func (m *ConnectionManager) Connect(ctx context.Context, info peer.AddrInfo) error {
	e, err := m.addToBook(info)
	if err != nil {
		return err
	}
	_, err = m.connectLocked(ctx, e)
	return err
}

// connectLocked returns the entry's link, starting or joining a dial if it
// has none. It is called with e.mu held and releases it.
func (m *ConnectionManager) connectLocked(ctx context.Context, e *entry) (*link, error) {
	for {
		if l := e.link; l != nil {
			if !l.dead() {
				e.mu.Unlock()
				return l, nil
			}
			// Its watcher has not run yet; it only clears e.link if it is
			// still this link, so moving on is safe.
			e.link = nil
		}
		call := e.dial
		if call == nil {
			if wait, until := e.pendingInbound(m.cfg.HandshakeTimeout); wait != nil {
				e.mu.Unlock()
				if err := waitUntil(ctx, wait, until); err != nil {
					return nil, err
				}
				e = m.lockEntry(e.id)
				continue
			}
			if len(e.addrs) == 0 {
				m.forget(e)
				e.mu.Unlock()
				return nil, fmt.Errorf("%w %s", ErrNoAddresses, e.id)
			}
			call = &dialCall{done: make(chan struct{})}
			if !m.spawn(func() { m.runDial(e, call) }) {
				e.mu.Unlock()
				return nil, ErrClosed
			}
			e.dial = call
		}
		e.mu.Unlock()
		select {
		case <-call.done:
			return call.link, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitUntil waits for ch to close or the deadline to pass (both nil
// errors), or for ctx to end (its error).
func waitUntil(ctx context.Context, ch <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// runDial performs one dial for every caller waiting on call.
func (m *ConnectionManager) runDial(e *entry, call *dialCall) {
	l, err := m.dial(e)
	e.mu.Lock()
	e.dial = nil
	if err != nil && e.link != nil && !e.link.dead() {
		// Another link to the peer opened while we dialed (the peer
		// dialed us and won the tie-break): the waiters have their link.
		l, err = e.link, nil
	}
	if err != nil {
		m.forget(e)
	}
	e.mu.Unlock()
	call.link, call.err = l, err
	close(call.done)
}

func (m *ConnectionManager) dial(e *entry) (*link, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
	defer cancel()
	e.mu.Lock()
	addrs := slices.Clone(e.addrs)
	e.mu.Unlock()
	if m.cfg.MaxConnections > 0 && m.conns.Load() >= int64(m.cfg.MaxConnections) {
		return nil, ErrConnectionLimit
	}
	var l *link
	err := m.breakers.Execute(e.id, func() error {
		var err error
		l, err = m.dialAddrs(ctx, e, addrs)
		return err
	})
	return l, err
}

// dialAddrs tries the peer's addresses in turn until one gives a link.
func (m *ConnectionManager) dialAddrs(ctx context.Context, e *entry, addrs []string) (*link, error) {
	var errs []error
	for _, addr := range addrs {
		conn, err := m.tr.Dial(ctx, addr, e.id)
		if err == nil {
			return m.register(e, conn)
		}
		var refused *transport.RemoteRefusedError
		if errors.As(err, &refused) && refused.Code == transport.RefusalDuplicate {
			return m.awaitInbound(ctx, e, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("peerlink: dial %s: %w", e.id.ShortString(), errors.Join(errs...))
}

// awaitInbound waits for the link the remote is dialing to us: it refused
// our dial because the two dials crossed and its own is the one to keep.
func (m *ConnectionManager) awaitInbound(ctx context.Context, e *entry, refusal error) (*link, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.HandshakeTimeout)
	defer cancel()
	for {
		e.mu.Lock()
		if l := e.link; l != nil && !l.dead() {
			e.mu.Unlock()
			return l, nil
		}
		wait := e.nextLink()
		e.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("peerlink: dial %s: %w (and its own dial did not arrive: %w)", e.id.ShortString(), refusal, ctx.Err())
		}
	}
}

// dialer returns which peer dialed a link of direction d to e.
func (m *ConnectionManager) dialer(e *entry, d transport.Direction) peer.ID {
	if d == transport.Outbound {
		return m.id
	}
	return e.id
}

// keepNew decides between an open link and a new one to the same peer,
// the same way on both ends: a peer that dials again has lost the old link
// (new wins); otherwise the link dialed by the smaller ID wins.
func (m *ConnectionManager) keepNew(e *entry, old *link, newDir transport.Direction) bool {
	if old.dead() {
		return true
	}
	oldDialer, newDialer := m.dialer(e, old.dir()), m.dialer(e, newDir)
	if oldDialer == newDialer {
		return true
	}
	return newDialer.Less(oldDialer)
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

// register makes conn the peer's link, unless the open link wins the
// tie-break, and starts its session.
func (m *ConnectionManager) register(e *entry, conn transport.Conn) (*link, error) {
	dir := conn.Direction()
	log := m.log.With().Str("peer", e.id.ShortString()).Str("addr", conn.RemoteAddr().String()).Stringer("direction", dir).Logger()
	e.mu.Lock()
	if dir == transport.Inbound {
		// This is the admitted link arriving, whatever becomes of it:
		// nobody is to wait for it any longer.
		e.admitted = time.Time{}
		// Counted as pending until it holds its slot (or never will).
		defer m.pending.done(e.id)
	}
	if m.closed.Load() {
		e.mu.Unlock()
		_ = conn.Close()
		return nil, ErrClosed
	}
	old := e.link
	if old != nil && !m.keepNew(e, old, dir) {
		e.mu.Unlock()
		_ = conn.Close()
		log.Debug().Msg("duplicate link dropped: the open one wins the tie-break")
		return old, nil
	}
	// A replacement may briefly exceed the limits by one: the old link
	// gives its slot back when its watcher runs.
	limit, inLimit := m.cfg.MaxConnections, m.cfg.MaxInboundConnections
	if old != nil {
		limit, inLimit = 0, 0
	}
	if !acquire(&m.conns, limit) {
		e.mu.Unlock()
		_ = conn.Close()
		return nil, ErrConnectionLimit
	}
	if dir == transport.Inbound && !acquire(&m.inbound, inLimit) {
		m.conns.Add(-1)
		e.mu.Unlock()
		_ = conn.Close()
		return nil, ErrInboundLimit
	}
	sess, err := mux.NewSession(conn, m.id, e.id, dir == transport.Outbound, m.linkMuxConfig(conn), m.route)
	if err != nil {
		m.release(dir)
		e.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("peerlink: start session with %s: %w", e.id.ShortString(), err)
	}
	now := time.Now()
	l := &link{peer: e.id, conn: conn, sess: sess, health: m.cfg.Health.NewState(now), openedAt: now}
	e.link = l
	if e.linkWait != nil {
		close(e.linkWait)
		e.linkWait = nil
	}
	e.mu.Unlock()

	if old != nil {
		old.close(ReasonReplaced)
	}
	// Published before the watcher starts, so that a link's disconnected
	// event can never overtake its connected event.
	addr := conn.RemoteAddr().String()
	log.Debug().Msg("link open")
	m.events.publish(Event{Type: EventConnected, Peer: e.id, Direction: dir, Addr: addr, Time: l.openedAt})
	if !m.spawn(func() { m.watch(e, l) }) {
		// Close has begun and may already have passed this entry.
		l.close(ReasonShutdown)
		m.release(dir)
		m.events.publish(Event{Type: EventDisconnected, Peer: e.id, Direction: dir, Addr: addr, Reason: ReasonShutdown, Time: time.Now()})
		return nil, ErrClosed
	}
	return l, nil
}

// linkMuxConfig sizes the session of a new link: its stream window from
// the RTT its handshake measured, and its stream limit to the memory
// budget (see window.go).
func (m *ConnectionManager) linkMuxConfig(conn transport.Conn) mux.Config {
	mc := m.muxCfg
	if m.cfg.TargetBandwidth > 0 {
		mc.StreamWindow = streamWindow(conn.HandshakeRTT(), m.cfg.TargetBandwidth, m.cfg.MaxStreamWindow)
	}
	if m.cfg.PeerMemoryBudget > 0 {
		mc.MaxStreams = streamCap(mc.MaxStreams, max(mc.StreamWindow, minStreamWindow), m.cfg.PeerMemoryBudget)
		if mc.ReservedStreams > mc.MaxStreams {
			mc.ReservedStreams = 0 // back to 10% of the lowered limit
		}
	}
	return mc
}

func (m *ConnectionManager) release(dir transport.Direction) {
	m.conns.Add(-1)
	if dir == transport.Inbound {
		m.inbound.Add(-1)
	}
}

// watch waits for a link to end, then does its bookkeeping and reports it.
func (m *ConnectionManager) watch(e *entry, l *link) {
	<-l.sess.Done()
	reason, err := DisconnectReason(l.reason.Load()), l.sess.Err()
	if reason == ReasonNone {
		reason = ReasonError
		if isCleanClose(err) {
			reason, err = ReasonRemote, nil
		}
	} else if why := l.why.Load(); why != nil {
		err = *why
	} else {
		err = nil
	}
	// Close waits for the session's stream handlers, so do it before
	// telling anyone the link is gone.
	_ = l.sess.Close()
	e.mu.Lock()
	if e.link == l {
		e.link = nil
	}
	if e.draining == l {
		e.draining = nil
	}
	m.forget(e)
	e.mu.Unlock()
	m.release(l.dir())
	if reason != ReasonLocal && reason != ReasonShutdown {
		e.mu.Lock()
		m.reconnectLocked(e)
		e.mu.Unlock()
	}
	ev := m.log.Debug().Str("peer", e.id.ShortString()).Stringer("direction", l.dir()).Stringer("reason", reason)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg("link closed")
	m.events.publish(Event{
		Type: EventDisconnected, Peer: e.id, Direction: l.dir(), Addr: l.conn.RemoteAddr().String(),
		Reason: reason, Err: err, Time: time.Now(),
	})
}

// isCleanClose reports whether a session ended because the remote closed
// the link in an orderly way.
func isCleanClose(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

func (m *ConnectionManager) acceptLoop(ln transport.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.closed.Load() {
				return
			}
			m.log.Debug().Err(err).Msg("accept")
			continue
		}
		e := m.lockEntry(conn.RemotePeer())
		e.mu.Unlock()
		if _, err := m.register(e, conn); err != nil {
			m.log.Debug().Err(err).Str("peer", conn.RemotePeer().ShortString()).Msg("inbound link not registered")
			e.mu.Lock()
			m.forget(e)
			e.mu.Unlock()
		}
	}
}

// Disconnect closes the link to id. Its stream handlers are waited for;
// an EventDisconnected with ReasonLocal follows.
func (m *ConnectionManager) Disconnect(id peer.ID) error {
	if m.closed.Load() {
		return ErrClosed
	}
	e, ok := m.peers.Get(id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	e.mu.Lock()
	l := e.link
	if l != nil {
		e.link, e.draining = nil, l
	}
	e.mu.Unlock()
	if l == nil {
		return fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	l.close(ReasonLocal)
	return nil
}

// SetStreamHandler registers h for inbound streams of protocol, replacing
// any handler already registered for it. h runs in its own goroutine and
// owns the stream, which is closed when h returns.
func (m *ConnectionManager) SetStreamHandler(protocol string, h mux.Handler) error {
	if err := mux.ValidateProtocol(protocol); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("peerlink: nil handler for protocol %q", protocol)
	}
	m.handlers.Store(protocol, h)
	return nil
}

// RemoveStreamHandler unregisters protocol's handler; later streams of that
// protocol are reset with mux.ErrProtocolNotSupported.
func (m *ConnectionManager) RemoveStreamHandler(protocol string) {
	m.handlers.Delete(protocol)
}

func (m *ConnectionManager) route(protocol string) mux.Handler {
	if h, ok := m.handlers.Load(protocol); ok {
		return h.(mux.Handler)
	}
	return nil
}

// OpenStream opens a stream of protocol to id at priority prio, connecting
// first if there is no link (and joining a dial already in flight). The
// stream's header travels with its first write, so opening costs no round
// trip.
func (m *ConnectionManager) OpenStream(ctx context.Context, id peer.ID, protocol string, prio mux.Priority) (*mux.Stream, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := mux.ValidateProtocol(protocol); err != nil {
		return nil, err
	}
	if !prio.Valid() {
		return nil, fmt.Errorf("%w: %d", mux.ErrInvalidPriority, prio)
	}
	if id == m.id {
		return nil, ErrDialSelf
	}
	for attempt := 0; ; attempt++ {
		l, err := m.connectLocked(ctx, m.lockEntry(id))
		if err != nil {
			return nil, err
		}
		s, err := l.sess.OpenStream(ctx, protocol, prio)
		if err != nil && errors.Is(err, mux.ErrSessionClosed) && attempt == 0 {
			continue // the link died under us; connect once more
		}
		return s, err
	}
}

// Status returns the state of the link to id.
func (m *ConnectionManager) Status(id peer.ID) peer.Status {
	e, ok := m.peers.Get(id)
	if !ok {
		return peer.StatusDisconnected
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.link != nil && !e.link.dead():
		return peer.StatusConnected
	case e.dial != nil || !e.admitted.IsZero():
		return peer.StatusConnecting
	case e.draining != nil || e.link != nil:
		return peer.StatusDisconnecting
	}
	return peer.StatusDisconnected
}

// ConnectionInfo describes one open link.
type ConnectionInfo struct {
	Peer       peer.ID
	Direction  transport.Direction
	LocalAddr  string
	RemoteAddr string
	OpenedAt   time.Time
	// Streams open now, and of them how many each side opened.
	Streams, InboundStreams, OutboundStreams int
	// BytesIn and BytesOut count bytes on the wire, framing included.
	BytesIn, BytesOut uint64
	// Health is the link's health record: RTTs of its checks and their
	// failures.
	Health health.Stats
}

// ConnectionInfo returns the link to id, or ErrNotConnected.
func (m *ConnectionManager) ConnectionInfo(id peer.ID) (ConnectionInfo, error) {
	l := m.openLink(id)
	if l == nil {
		return ConnectionInfo{}, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	in, out := l.sess.StreamCounts()
	return ConnectionInfo{
		Peer:            id,
		Direction:       l.dir(),
		LocalAddr:       l.conn.LocalAddr().String(),
		RemoteAddr:      l.conn.RemoteAddr().String(),
		OpenedAt:        l.openedAt,
		Streams:         in + out,
		InboundStreams:  in,
		OutboundStreams: out,
		BytesIn:         l.sess.BytesIn(),
		BytesOut:        l.sess.BytesOut(),
		Health:          l.health.Snapshot(),
	}, nil
}

func (m *ConnectionManager) openLink(id peer.ID) *link {
	e, ok := m.peers.Get(id)
	if !ok {
		return nil
	}
	e.mu.Lock()
	l := e.link
	e.mu.Unlock()
	if l == nil || l.dead() {
		return nil
	}
	return l
}

// StreamStats describes the streams and the write queue of one link.
type StreamStats struct {
	// Open streams by priority (index mux.PriorityLow..PriorityCritical),
	// both directions, and the link's limit (lowered on long links to fit
	// PeerMemoryBudget) and stream window.
	ByPriority [mux.NumPriorities]int
	Limit      int
	Window     uint32
	// SlotWaiters is how many OpenStream calls wait for a slot of the
	// link's limit now.
	SlotWaiters int
	// Queues are the write scheduler's figures per priority: writes
	// waiting, bytes queued, chunks served, time waited, refusals.
	Queues [mux.NumPriorities]mux.QueueStats
	// QueueUtilization is the bytes queued over MaxQueuedBytes.
	QueueUtilization float64
}

// StreamStats returns the stream and queue figures of the link to id.
func (m *ConnectionManager) StreamStats(id peer.ID) (StreamStats, error) {
	l := m.openLink(id)
	if l == nil {
		return StreamStats{}, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	cfg := l.sess.Config()
	return StreamStats{
		ByPriority:       l.sess.StreamsByPriority(),
		Limit:            cfg.MaxStreams,
		Window:           cfg.StreamWindow,
		SlotWaiters:      l.sess.SlotWaiters(),
		Queues:           l.sess.QueueStats(),
		QueueUtilization: l.sess.Utilization(),
	}, nil
}

// Peers returns the IDs of the peers with an open link, in ID order.
func (m *ConnectionManager) Peers() []peer.ID {
	var ids []peer.ID
	m.peers.Range(func(id peer.ID, e *entry) bool {
		e.mu.Lock()
		if e.link != nil && !e.link.dead() {
			ids = append(ids, id)
		}
		e.mu.Unlock()
		return true
	})
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

// ConnectionCount returns the number of open links.
func (m *ConnectionManager) ConnectionCount() int {
	return int(m.conns.Load())
}

// Subscribe returns a subscription to link events with room for buffer
// undelivered events (0 means DefaultEventBuffer).
func (m *ConnectionManager) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return m.events.subscribe(buffer)
}

// Close closes the listeners and every link, stops every goroutine the
// manager started and waits for them, then closes all subscriptions.
// Calling it again does nothing; other methods then return ErrClosed.
func (m *ConnectionManager) Close() error {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		return nil
	}
	m.closed.Store(true)
	listeners := m.listeners
	m.listeners = nil
	m.mu.Unlock()

	m.cancel()
	var errs []error
	for _, ln := range listeners {
		if err := ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	// A link registered after this pass sees closed and closes itself.
	m.peers.Range(func(_ peer.ID, e *entry) bool {
		e.mu.Lock()
		l := e.link
		e.mu.Unlock()
		if l != nil {
			l.close(ReasonShutdown)
		}
		return true
	})
	m.wg.Wait()
	m.events.close()
	m.log.Debug().Msg("closed")
	return errors.Join(errs...)
}

// admission is the gater the manager gives its transport: the user's gater
// first, then the manager's own rules for inbound links.
type admission struct {
	m    *ConnectionManager
	user transport.Gater
}

var errSimultaneousDial = errors.New("peerlink: simultaneous dial: keeping the link dialed by the smaller ID")

func (a *admission) InterceptDial(id peer.ID, addr string) error {
	if a.user != nil {
		return a.user.InterceptDial(id, addr)
	}
	return nil
}

func (a *admission) InterceptAccept(remote net.Addr) error {
	if a.m.closed.Load() {
		return transport.Refuse(transport.RefusalClosing, ErrClosed)
	}
	if a.user != nil {
		return a.user.InterceptAccept(remote)
	}
	return nil
}

func (a *admission) InterceptSecured(dir transport.Direction, id peer.ID, remote net.Addr) error {
	if a.user != nil {
		if err := a.user.InterceptSecured(dir, id, remote); err != nil {
			return err
		}
	}
	if dir != transport.Inbound {
		return nil
	}
	m := a.m
	if m.closed.Load() {
		return transport.Refuse(transport.RefusalClosing, ErrClosed)
	}
	if id == m.id {
		return transport.Refuse(transport.RefusalOther, ErrDialSelf)
	}
	e := m.lockEntry(id)
	defer e.mu.Unlock()
	weWin := m.id.Less(id)
	replacing := false
	switch l := e.link; {
	case l != nil && !l.dead():
		if l.dir() == transport.Outbound && weWin {
			return transport.Refuse(transport.RefusalDuplicate, errSimultaneousDial)
		}
		replacing = true
	case e.dial != nil && weWin:
		return transport.Refuse(transport.RefusalDuplicate, errSimultaneousDial)
	}
	now := time.Now()
	if !replacing {
		err := m.pending.admit(id, now, func(pending int64) error {
			if max := m.cfg.MaxConnections; max > 0 && m.conns.Load()+pending >= int64(max) {
				return transport.Refuse(transport.RefusalLimit, ErrConnectionLimit)
			}
			if max := m.cfg.MaxInboundConnections; max > 0 && m.inbound.Load()+pending >= int64(max) {
				return transport.Refuse(transport.RefusalLimit, ErrInboundLimit)
			}
			return nil
		})
		if err != nil {
			m.forget(e)
			return err
		}
	}
	e.admitted = now
	return nil
}
