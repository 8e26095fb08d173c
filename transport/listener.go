package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// errListenerClosed is the cause given to the listener's context.
var errListenerClosed = fmt.Errorf("listener closed: %w", net.ErrClosed)

// listener is the Listener of every transport: it runs one accept loop
// over a raw net.Listener and one goroutine per admitted socket, which
// runs the upgrader's inbound sequence and hands the link to Accept.
type listener struct {
	up  *upgrader
	raw net.Listener
	log zerolog.Logger

	ctx    context.Context // ends at Close; aborts handshakes and handovers
	cancel context.CancelCauseFunc

	pending  chan struct{} // semaphore: one token per handshake in flight
	accepted chan Conn     // unbuffered: a link is handed over or closed

	loopDone chan struct{}
	loopErr  error // set before loopDone closes

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
		pending:  make(chan struct{}, up.maxPending),
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
		select {
		case l.pending <- struct{}{}:
		default:
			raw.Close()
			l.up.stats.inOverLimit.Add(1)
			l.event("overlimit", remote, nil)
			continue
		}
		l.up.stats.inPending.Add(1)
		l.wg.Go(func() { l.handshake(raw, remote) })
	}
}

// handshake runs one inbound upgrade and hands the link to Accept. Its
// pending token is held until then: an application that stops calling
// Accept stops the listener from taking on more work.
func (l *listener) handshake(raw net.Conn, remote net.Addr) {
	release := func() {
		<-l.pending
		l.up.stats.inPending.Add(-1)
	}
	if l.up.hook != nil {
		l.up.hook("start", remote, nil)
	}
	c, err := l.up.upgradeInbound(l.ctx, raw)
	if err != nil {
		release()
		kind := "failed"
		if errors.Is(err, ErrGated) {
			kind = "refused"
		}
		l.event(kind, remote, err)
		return
	}
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
	release()
}

// event logs an inbound outcome other than success (at debug level: one
// per socket) and tells the test hook.
func (l *listener) event(kind string, remote net.Addr, err error) {
	if e := l.log.Debug(); e.Enabled() {
		e = e.Stringer("addr", remote).Stringer("direction", Inbound)
		switch kind {
		case "overlimit":
			e.Int("max_pending", l.up.maxPending).Msg("inbound socket closed: too many handshakes in flight")
		case "refused":
			e.Err(err).Msg("inbound link refused")
		default:
			e.Err(err).Msg("inbound handshake failed")
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
