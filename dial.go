package peerlink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peerlink/peerlink/metrics"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/transport"
)

// dialCall is one dial in flight; every Connect and OpenStream for the
// peer waits on it. It is resolved once: by the dial, or earlier by an
// inbound link from the peer that satisfies it.
type dialCall struct {
	done   chan struct{}
	once   sync.Once
	link   *link
	err    error
	cancel context.CancelFunc
	// inFlight counts the dial until its waiters have their answer
	// (Statistics.Dials.InFlight); attempts being called off after that
	// are no longer a dial anyone waits on.
	inFlight *metrics.Gauge
	// secured is set, under the record's lock, once one of the dial's
	// attempts has authenticated the peer: from then on the dial counts
	// in the simultaneous-dial tie-break (see admission.go).
	secured bool
	// redials counts the dials made again because the peer still held a
	// link we had closed (see staleAtRemote); the dial's goroutine alone
	// uses it.
	redials int
}

// errDialSatisfied marks a dial that failed after an inbound link from
// the peer had satisfied it; the peer's circuit does not count it.
var errDialSatisfied = errors.New("peerlink: dial satisfied by the peer's own link")

func (c *dialCall) resolved() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *dialCall) resolve(l *link, err error) {
	c.once.Do(func() {
		c.link, c.err = l, err
		c.inFlight.Dec()
		close(c.done)
	})
}

type noDialKey struct{}

// WithNoDial returns a context that makes OpenStream use an open link
// only: with none, it fails at once with ErrNoLink instead of dialing
// (go-libp2p's network.WithNoDial).
func WithNoDial(ctx context.Context) context.Context {
	return context.WithValue(ctx, noDialKey{}, true)
}

func noDial(ctx context.Context) bool {
	v, _ := ctx.Value(noDialKey{}).(bool)
	return v
}

// Connect makes sure there is a link to info.ID, dialing if needed. The
// addresses in info are added to the address book first; with none given,
// the book's are used. Concurrent calls for one peer share one dial; ctx
// bounds only this caller's wait.
func (m *ConnectionManager) Connect(ctx context.Context, info peer.AddrInfo) error {
	r, err := m.addToBook(info, peerstore.SourceManual)
	if err != nil {
		return err
	}
	_, err = m.connectLocked(ctx, r, true)
	return err
}

// currentLink returns r's link if it is open. A link that has died but
// whose owner has not yet run is detached here, so that its Disconnected
// is published before any new link's Connected. r.mu must be held.
func (m *ConnectionManager) currentLink(r *record) *link {
	l := r.link
	if l == nil {
		return nil
	}
	if !l.dead() {
		return l
	}
	reason, err := endReason(l)
	m.detachLocked(r, l, reason, err)
	return nil
}

// endReason says why a link's session ended by itself.
func endReason(l *link) (DisconnectReason, error) {
	if err := l.sess.Err(); !isCleanClose(err) {
		return ReasonError, err
	}
	return ReasonRemote, nil
}

// connectLocked returns the record's link, starting or joining a dial if
// it has none (unless dial is false). It is called with r.mu held and
// releases it.
func (m *ConnectionManager) connectLocked(ctx context.Context, r *record, dial bool) (*link, error) {
	for {
		if l := m.currentLink(r); l != nil {
			r.mu.Unlock()
			return l, nil
		}
		if !dial {
			r.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrNoLink, r.id.ShortString())
		}
		call := r.dial
		if call != nil && call.resolved() {
			// Its waiters have their answer, and there is no link now: that
			// dial is over for callers, though its goroutine may still be
			// calling off its other attempts (it clears r.dial only if it
			// is still its own).
			call = nil
		}
		if call == nil {
			now := m.clock.Now()
			if wait, until := r.pendingInbound(now, m.cfg.HandshakeTimeout); wait != nil {
				r.mu.Unlock()
				if err := m.waitUntil(ctx, wait, until.Sub(now)); err != nil {
					return nil, err
				}
				r = m.lockRecord(r.id)
				continue
			}
			addrs := r.book.DialOrder(now)
			if len(addrs) == 0 {
				m.dropIfUnused(r)
				r.mu.Unlock()
				return nil, fmt.Errorf("%w %s", ErrNoAddresses, r.id)
			}
			dctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
			call = &dialCall{done: make(chan struct{}), cancel: cancel, inFlight: &m.stats.dialing}
			call.inFlight.Inc()
			if !m.spawn(func() { m.runDial(dctx, r, call, addrs) }) {
				call.inFlight.Dec()
				cancel()
				r.mu.Unlock()
				return nil, ErrClosed
			}
			m.stats.dials.Inc() // as it starts: a caller answered early sees it
			r.dial = call
		}
		r.mu.Unlock()
		select {
		case <-call.done:
			return call.link, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitUntil waits for ch to close or d to pass on the manager's clock
// (both nil errors), or for ctx to end (its error).
func (m *ConnectionManager) waitUntil(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	t := m.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// runDial performs one dial for every caller waiting on call.
func (m *ConnectionManager) runDial(ctx context.Context, r *record, call *dialCall, addrs []string) {
	defer call.cancel()
	var l *link
	err := ErrConnectionLimit
	if max := m.limits().MaxConnections; max <= 0 || m.conns.Load() < int64(max) {
		err = m.breakers.Execute(r.id, func() error {
			var err error
			l, err = m.dialAddrs(ctx, r, call, addrs)
			if err != nil && call.resolved() {
				// The peer reached us meanwhile: it is alive, whatever
				// became of our attempts.
				return fmt.Errorf("%w: %w", errDialSatisfied, err)
			}
			return err
		})
	}
	if err != nil && !errors.Is(err, errDialSatisfied) {
		m.stats.dialErrors[dialErrorClass(err)].Inc()
	}
	r.mu.Lock()
	if r.dial == call {
		r.dial = nil
	}
	if err != nil && !excluded(err) && !errors.Is(err, ErrCircuitOpen) {
		// A failed dial counts against the peer's score as a failed
		// request does (the breaker keeps its own count).
		now := m.clock.Now()
		r.hist.RecordError(now)
		m.rescoreLocked(r, now, false)
	}
	if err != nil {
		// Another link to the peer may have opened while we dialed (the
		// peer dialed us and won the tie-break): the waiters take it.
		if cur := m.currentLink(r); cur != nil {
			l, err = cur, nil
		} else {
			m.dropIfUnused(r)
		}
	}
	r.mu.Unlock()
	call.resolve(l, err)
}

// attempt is the outcome of dialing one address.
type attempt struct {
	addr string
	conn transport.Conn
	err  error
}

// dialAddrs dials the peer's addresses happy-eyeballs style (RFC 8305):
// the first at once, each next one after DialAddrDelay or as soon as the
// one before fails, each under its own DialAddrTimeout, so a black-holed
// address cannot starve the others. The first link to complete wins and
// is registered at once (its waiters need not wait for the others, which
// are called off).
func (m *ConnectionManager) dialAddrs(ctx context.Context, r *record, call *dialCall, addrs []string) (*link, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attempt, len(addrs))
	next, running := 0, 0
	start := func() {
		addr := addrs[next]
		next++
		running++
		actx, acancel := context.WithTimeout(ctx, m.cfg.DialAddrTimeout)
		go func() { // waited for below: running counts it
			defer acancel()
			conn, err := m.tr.Dial(actx, addr, r.id)
			results <- attempt{addr, conn, err}
		}()
	}
	start()
	delay := m.clock.NewTimer(m.cfg.DialAddrDelay)
	defer delay.Stop()
	var (
		won       bool
		l         *link
		linkErr   error
		errs      []error
		duplicate error
	)
	// startNext starts the next address, unless the dial is decided.
	startNext := func() {
		if !won && duplicate == nil && next < len(addrs) && ctx.Err() == nil {
			start()
			delay.Reset(m.cfg.DialAddrDelay)
		}
	}
	for running > 0 {
		select {
		case a := <-results:
			running--
			switch {
			case a.err == nil && !won:
				won = true
				cancel()
				now := m.clock.Now()
				r.mu.Lock()
				r.book.Add(a.addr, peerstore.SourceDialed, m.cfg.AddrTTL, now)
				r.book.Succeeded(a.addr, now)
				r.mu.Unlock()
				l, linkErr = m.register(a.conn)
				if linkErr == nil {
					call.resolve(l, nil)
				}
			case a.err == nil:
				_ = a.conn.Close() // a later link: the first one won
			case won:
				// Called off: says nothing about the address.
			default:
				var refused *transport.RemoteRefusedError
				if errors.As(a.err, &refused) && refused.Code == transport.RefusalDuplicate {
					duplicate = a.err // says nothing against the address
				} else if ctx.Err() == nil {
					r.mu.Lock()
					r.book.Failed(a.addr)
					r.mu.Unlock()
				}
				errs = append(errs, fmt.Errorf("%s: %w", a.addr, a.err))
				startNext()
			}
		case <-delay.C():
			startNext()
		}
	}
	switch {
	case won:
		return l, linkErr
	case duplicate != nil && call.redials < maxStaleRedials:
		if prev := m.staleAtRemote(r); prev != nil {
			call.redials++
			if err := m.waitStale(ctx, prev, call.redials); err != nil {
				return nil, fmt.Errorf("peerlink: dial %s: %w (waiting for our old link to close: %w)", r.id.ShortString(), duplicate, err)
			}
			return m.dialAddrs(ctx, r, call, addrs)
		}
		return m.awaitInbound(ctx, r, duplicate)
	case duplicate != nil:
		return m.awaitInbound(ctx, r, duplicate)
	case m.closed.Load():
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("peerlink: dial %s: %w", r.id.ShortString(), errors.Join(errs...))
}

// maxStaleRedials bounds the dials made again by one dial call because
// the peer still held a link we had closed.
const maxStaleRedials = 4

// staleAtRemote returns the Done channel of the session of the link to r's
// peer that we closed an instant ago,
// if the peer had dialed it and no link of its is on its way to us: then a
// refusal of our dial as a crossed one means the peer still holds that
// link (the close has not reached it) and takes ours for a duplicate, and
// no dial of its will come. Nothing else tells the two apart: a node that
// disconnects a peer and dials it at once would otherwise wait
// HandshakeTimeout for a link that never comes.
func (m *ConnectionManager) staleAtRemote(r *record) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.lastLink
	if prev.closed == nil || !prev.inbound || !r.admitted.IsZero() || m.currentLink(r) != nil ||
		m.clock.Now().Sub(prev.at) > m.cfg.HandshakeTimeout {
		return nil
	}
	return prev.closed
}

// waitStale waits until our end of the old link is closed, so that
// the peer sees the close before our next dial; from the second redial on
// it also waits a few milliseconds more (5, 20, 80), for a peer slow to
// read it.
func (m *ConnectionManager) waitStale(ctx context.Context, closed <-chan struct{}, redials int) error {
	select {
	case <-closed:
	case <-ctx.Done():
		return ctx.Err()
	}
	if redials < 2 {
		return nil
	}
	t := m.clock.NewTimer(5 * time.Millisecond << (2 * (redials - 2)))
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// awaitInbound waits for the link the remote is dialing to us: it refused
// our dial because the two dials crossed and its own is the one to keep.
func (m *ConnectionManager) awaitInbound(ctx context.Context, r *record, refusal error) (*link, error) {
	deadline := m.clock.NewTimer(m.cfg.HandshakeTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if l := m.currentLink(r); l != nil {
			r.mu.Unlock()
			return l, nil
		}
		wait := r.nextLink()
		r.mu.Unlock()
		select {
		case <-wait:
		case <-deadline.C():
			return nil, fmt.Errorf("peerlink: dial %s: %w (and its own dial did not arrive within %v)", r.id.ShortString(), refusal, m.cfg.HandshakeTimeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("peerlink: dial %s: %w (and its own dial did not arrive: %w)", r.id.ShortString(), refusal, ctx.Err())
		}
	}
}
