package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// errListenerClosed is the cause given to the listener's context.
var errListenerClosed = fmt.Errorf("listener closed: %w", net.ErrClosed)

// listener is the Listener of every transport: it runs one accept loop
// over a raw net.Listener and one goroutine per pending socket, which
// waits for its first byte, runs the upgrader's inbound sequence and
// hands the link to Accept. The pending sockets are held in a
// pendingTable, which decides whom a new socket evicts when a cap is
// reached, or that it is refused; refused sockets get the refusal
// marker from at most maxRefusers short-lived refusers. The accept loop
// waits on none of them.
type listener struct {
	up  *upgrader
	raw net.Listener
	log zerolog.Logger

	ctx    context.Context // ends at Close; aborts handshakes, handovers and refusals
	cancel context.CancelCauseFunc

	table    *pendingTable
	refusers chan struct{} // one token per refusal writing its marker
	accepted chan Conn     // unbuffered: a link is handed over or closed

	loopDone chan struct{}
	loopErr  error // set before loopDone closes

	evictions int // by the accept loop; see evictPace

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

func newListener(up *upgrader, raw net.Listener) *listener {
	ctx, cancel := context.WithCancelCause(context.Background())
	l := &listener{
		up:       up,
		raw:      raw,
		log:      up.log.With().Stringer("listen", raw.Addr()).Logger(),
		ctx:      ctx,
		cancel:   cancel,
		table:    newPendingTable(up.pending, func(e *pendingEntry) bool { return hasUnread(e.conn) }),
		refusers: make(chan struct{}, maxRefusers),
		accepted: make(chan Conn),
		loopDone: make(chan struct{}),
	}
	l.log.Info().Msg("listening")
	l.wg.Go(l.acceptLoop)
	return l
}

func (l *listener) Addr() net.Addr { return l.raw.Addr() }

func (l *listener) Accept() (Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("transport: accept on %s: %w", l.raw.Addr(), net.ErrClosed)
	case <-l.loopDone:
		if l.ctx.Err() != nil {
			return nil, fmt.Errorf("transport: accept on %s: %w", l.raw.Addr(), net.ErrClosed)
		}
		return nil, l.loopErr
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.cancel(errListenerClosed)
		if err := l.raw.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			l.closeErr = fmt.Errorf("transport: close listener %s: %w", l.raw.Addr(), err)
		}
		l.wg.Wait()
		l.log.Debug().Msg("listener closed")
	})
	return l.closeErr
}

func (l *listener) acceptLoop() {
	defer close(l.loopDone)
	var backoff time.Duration
	for {
		raw, err := l.raw.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-l.ctx.Done():
					t.Stop()
					return
				}
				continue
			}
			l.loopErr = fmt.Errorf("transport: accept on %s: %w", l.raw.Addr(), err)
			return
		}
		backoff = 0
		remote := raw.RemoteAddr()

		if err := l.up.gater.InterceptAccept(remote); err != nil {
			raw.Close()
			l.up.stats.inRefused.Add(1)
			l.event("refused", remote, fmt.Errorf("%w: socket from %s: %w", ErrGated, remote, err))
			continue
		}
		l.admit(raw, remote)
	}
}

// admit enters a new socket in the pending table and starts its
// handshake, or refuses it (MaxInboundPerIP, or no room). Sockets it
// evicts to make room are closed here; their goroutines then end.
func (l *listener) admit(raw net.Conn, remote net.Addr) {
	e := &pendingEntry{conn: raw, remote: remote, start: time.Now()}
	if ip, ok := remoteIP(remote); ok && l.up.limited(ip) {
		e.limited, e.ip, e.subnet = true, ip, subnetOf(ip)
		if host := hostOf(ip); l.up.links.full(host) {
			l.up.stats.inAddrLimit.Add(1)
			l.refuse(raw, markerAddrLimit)
			if l.reporting() {
				l.event("addrlimit", remote, fmt.Errorf("%w: socket from %s refused: %d links from %s already (MaxInboundPerIP)",
					ErrAddrConnLimit, remote, l.up.links.max, prefixString(host)))
			}
			return
		}
	}
	victims, full, ok := l.table.admit(e, e.start)
	if len(victims) > 0 {
		// Under a flood of silent sockets, take the next socket a moment
		// later: meanwhile sockets wait in the kernel's accept queue,
		// which costs us nothing, and an honest dialer's first bytes
		// arrive there, so that it joins the table having spoken (see
		// pendingTable.probe) instead of as the newest silent socket,
		// which a flood from its own address would evict within
		// microseconds. Attackers' sockets, which never speak, queue
		// behind each other. (Every few evictions: a sleep takes about a
		// millisecond whatever is asked.)
		if l.evictions++; l.evictions%evictBurst == 0 {
			defer time.Sleep(evictPace)
		}
	}
	for _, v := range victims {
		v.e.conn.Close()
		l.up.stats.inPending.Add(-1)
		what := "nothing received"
		if v.why == evictSlow {
			l.up.stats.inEvictedSlow.Add(1)
			what = "handshake not done"
		} else {
			l.up.stats.inEvictedSilent.Add(1)
		}
		if l.reporting() {
			l.event("evicted", v.e.remote, fmt.Errorf("transport: pending socket from %s evicted (%s, %s after %v) for a new socket from %s: %s cap of %d reached",
				v.e.remote, v.why, what, e.start.Sub(v.e.start).Round(time.Millisecond), remote, v.scope, l.capOf(v.scope)))
		}
	}
	if !ok {
		l.up.stats.inOverLimit.Add(1)
		l.refuse(raw, markerBusy)
		if l.reporting() {
			l.event("overlimit", remote, fmt.Errorf("%w: socket from %s refused: %s cap of %d pending handshakes reached, none silent or slow",
				ErrListenerBusy, remote, full, l.capOf(full)))
		}
		return
	}
	l.up.stats.inPending.Add(1)
	l.wg.Go(func() { l.handshake(e, raw) })
}

// Under a flood, the accept loop pauses for evictPace after every
// evictBurst evictions: about 250 µs an eviction.
const (
	evictPace  = time.Millisecond
	evictBurst = 4
)

// capOf returns the cap of a scope.
func (l *listener) capOf(s pendingScope) int {
	switch s {
	case scopeIP:
		return l.up.pending.perIP
	case scopeSubnet:
		return l.up.pending.perSubnet
	}
	return l.up.pending.global
}

// release takes e out of the pending table; false if it was evicted, in
// which case its outcome is accounted for already and nothing more may
// be reported.
func (l *listener) release(e *pendingEntry) bool {
	if !l.table.release(e) {
		return false
	}
	l.up.stats.inPending.Add(-1)
	return true
}

// handshake waits for the socket's first byte (FirstByteTimeout), runs
// one inbound upgrade and hands the link to Accept. Its table entry is
// held until then: an application that stops calling Accept stops the
// listener from taking on more work. If the entry is evicted, the
// socket is closed under it, and it ends without a word.
func (l *listener) handshake(e *pendingEntry, raw net.Conn) {
	remote := e.remote
	if l.up.hook != nil {
		l.up.hook("start", remote, nil)
	}
	conn := raw
	if l.up.wrapRaw != nil {
		conn = l.up.wrapRaw(raw)
	}

	// The first byte, read here and replayed to the security step.
	var first [1]byte
	done := guard(l.ctx, conn)
	_ = conn.SetReadDeadline(e.start.Add(l.up.firstByte))
	_, err := io.ReadFull(conn, first[:])
	if done() && err == nil {
		err = context.Cause(l.ctx)
	}
	if err != nil {
		conn.Close()
		if !l.release(e) {
			return
		}
		if isTimeout(err) && l.up.firstByte < l.up.timeout && l.ctx.Err() == nil {
			l.up.stats.inFirstByteTimeout.Add(1)
			l.event("silent", remote, fmt.Errorf("%w: nothing received from %s within FirstByteTimeout (%v)",
				ErrHandshakeTimeout, remote, l.up.firstByte))
			return
		}
		l.up.stats.inFailed.Add(1)
		l.event("failed", remote, l.up.failure(l.ctx, l.up.sec.name(), err))
		return
	}
	if !l.table.spoke(e) {
		conn.Close() // evicted meanwhile
		return
	}
	if l.up.hook != nil {
		l.up.hook("spoke", remote, nil)
	}

	c, err := l.up.upgradeInbound(l.ctx, newReplayConn(conn, first[:]), e.start.Add(l.up.timeout),
		func(c Conn) error { return l.admitLink(e, c) })
	if err != nil {
		if !l.release(e) {
			return
		}
		kind := "failed"
		switch {
		case errors.Is(err, ErrGated):
			kind = "refused"
			l.up.stats.inRefused.Add(1)
		case errors.Is(err, ErrAddrConnLimit):
			kind = "addrlimit"
			l.up.stats.inAddrLimit.Add(1)
		default:
			l.up.stats.inFailed.Add(1)
		}
		l.event(kind, remote, err)
		return
	}
	l.up.stats.inOK.Add(1)
	if e := l.log.Debug(); e.Enabled() {
		e.Stringer("addr", remote).Str("peer", c.RemotePeer().ShortString()).
			Stringer("direction", Inbound).Msg("link established")
	}
	if l.up.hook != nil {
		l.up.hook("ok", remote, nil)
	}
	select {
	case l.accepted <- c:
	case <-l.ctx.Done():
		c.Close()
	}
	l.release(e)
}

// errEvicted refuses a link whose pending entry was evicted during its
// handshake (its socket is closed: the verdict goes nowhere).
var errEvicted = errors.New("evicted while pending")

// admitLink is called once the gater has allowed the link, before the
// verdict: from now on its entry is not evicted, and it counts against
// MaxInboundPerIP (until its Conn is closed) unless that is reached.
func (l *listener) admitLink(e *pendingEntry, c Conn) error {
	if !l.table.admitted(e) {
		return Refuse(RefusalLimit, errEvicted)
	}
	if !e.limited {
		return nil
	}
	host := hostOf(e.ip)
	release, ok := l.up.links.reserve(host)
	if !ok {
		return Refuse(RefusalAddrLimit, &addrLimitError{host: host, limit: l.up.links.max})
	}
	c.(closeHooker).setCloseHook(release)
	return nil
}

// reporting reports whether events are logged or go to the test hook:
// only then are their errors worth building (on the accept loop, under
// a flood, for every socket).
func (l *listener) reporting() bool {
	if l.up.hook != nil {
		return true
	}
	e := l.log.Debug()
	defer e.Discard()
	return e.Enabled()
}

// event logs an inbound outcome other than success (at debug level: one
// per socket) and tells the test hook.
func (l *listener) event(kind string, remote net.Addr, err error) {
	if e := l.log.Debug(); e.Enabled() {
		e = e.Stringer("addr", remote).Stringer("direction", Inbound).Err(err)
		switch kind {
		case "overlimit":
			e.Msg("inbound socket refused: listener busy")
		case "addrlimit":
			e.Msg("inbound socket refused: too many links from its address")
		case "evicted":
			e.Msg("pending inbound socket evicted")
		case "silent":
			e.Msg("inbound socket closed: nothing received")
		case "refused":
			e.Msg("inbound link refused")
		default:
			e.Msg("inbound handshake failed")
		}
	}
	if l.up.hook != nil {
		l.up.hook(kind, remote, err)
	}
}

// isTemporary reports whether an Accept error is worth retrying (out of
// file descriptors and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
