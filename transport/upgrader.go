package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

// securer is the one step in which transports differ: it runs over a raw
// connection whose deadline is set, proves (or, for Memory, claims) both
// IDs and checks the network. Its errors wrap ErrPeerIDMismatch,
// ErrNetworkMismatch, ErrInvalidCertificate, ErrCertificateRejected or
// ErrProtocol where they apply; other errors are returned with
// unprefixed context for the upgrader to wrap, timeouts untouched.
type securer interface {
	// name is the step's name in errors: "tls handshake", "memory hello".
	name() string
	secureOutbound(raw net.Conn, expected peer.ID) (Conn, error)
	secureInbound(raw net.Conn) (Conn, error)
}

// upgrader turns raw connections into admitted links. It is the single
// code path shared by all transports: deadline and cancellation, the
// security step, the gater's InterceptSecured and the admission verdict.
type upgrader struct {
	local     peer.ID
	timeout   time.Duration
	firstByte time.Duration // Config.FirstByteTimeout, at most timeout
	pending   pendingLimits // each listener's caps on pending handshakes
	exempt    []netip.Prefix
	links     *addrLinks // Config.MaxInboundPerIP; nil: unlimited
	gater     Gater
	sec       securer
	wrapRaw   func(net.Conn) net.Conn // Config.RawConnWrapper, or nil
	log       zerolog.Logger
	stats     counters

	// hook, if set (tests only, before any Listen), sees each inbound
	// event: "start" (handshake goroutine started), "spoke" (first byte
	// read), "ok", "failed", "refused" (by the gater), "overlimit"
	// (refused as busy), "addrlimit" (MaxInboundPerIP), "evicted",
	// "silent" (FirstByteTimeout). It is called from the accept loop
	// too, so it must not block.
	hook func(kind string, remote net.Addr, err error)
}

func newUpgrader(cfg Config, sec securer) *upgrader {
	return &upgrader{
		local:     cfg.Identity.ID(),
		timeout:   cfg.HandshakeTimeout,
		firstByte: min(cfg.FirstByteTimeout, cfg.HandshakeTimeout),
		pending: pendingLimits{
			global:    cfg.MaxPendingHandshakes,
			perIP:     cfg.MaxPendingPerIP,
			perSubnet: cfg.MaxPendingPerSubnet,
			slowAfter: min(cfg.FirstByteTimeout, cfg.HandshakeTimeout),
		},
		exempt:  cfg.LimitExempt,
		links:   newAddrLinks(cfg.MaxInboundPerIP),
		gater:   cfg.Gater,
		sec:     sec,
		wrapRaw: cfg.RawConnWrapper,
		log:     cfg.Logger,
	}
}

// limited reports whether the per-address caps apply to ip.
func (u *upgrader) limited(ip netip.Addr) bool {
	for _, p := range u.exempt {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// dialFunc opens a raw connection to addr. It returns the connect's round
// trip if it measured one (TCP), else 0.
type dialFunc func(ctx context.Context, addr string) (net.Conn, time.Duration, error)

// dial runs the outbound sequence: InterceptDial, the raw dial, the
// RawConnWrapper, then upgradeOutbound.
func (u *upgrader) dial(ctx context.Context, addr string, expected peer.ID, dialRaw dialFunc) (Conn, error) {
	if expected.IsZero() {
		u.stats.outFailed.Add(1)
		return nil, fmt.Errorf("transport: dial %s: expected peer ID is the zero ID", addr)
	}
	if err := u.gater.InterceptDial(expected, addr); err != nil {
		u.stats.outRefused.Add(1)
		return nil, fmt.Errorf("%w: dial to %s at %s: %w", ErrGated, expected.ShortString(), addr, err)
	}
	if err := ctx.Err(); err != nil {
		u.stats.outFailed.Add(1)
		return nil, fmt.Errorf("transport: dial %s at %s: %w", expected.ShortString(), addr, ctxErr(ctx))
	}
	raw, connectRTT, err := dialRaw(ctx, addr)
	if err != nil {
		u.stats.outFailed.Add(1)
		return nil, fmt.Errorf("transport: dial %s at %s: %w", expected.ShortString(), addr, err)
	}
	if u.wrapRaw != nil {
		raw = u.wrapRaw(raw)
		connectRTT = 0 // the connect ran under the wrapper: the handshake's probe says more
	}
	c, err := u.upgradeOutbound(ctx, raw, expected)
	if err != nil {
		// Counted by upgradeOutbound.
		return nil, err
	}
	if s, ok := c.(rttSetter); ok && connectRTT > 0 {
		s.setHandshakeRTT(connectRTT)
	}
	if e := u.log.Debug(); e.Enabled() {
		e.Stringer("addr", raw.RemoteAddr()).Str("peer", c.RemotePeer().ShortString()).
			Stringer("direction", Outbound).Msg("link established")
	}
	return c, nil
}

// guard arms the abort of a handshake: when ctx ends, raw is closed,
// which fails whatever the handshake is blocked in. done disarms it and
// reports whether it had fired; it waits for the closing to finish, so
// no goroutine outlives the handshake.
func guard(ctx context.Context, raw net.Conn) (done func() (fired bool)) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		raw.Close()
		close(closed)
	})
	return func() bool {
		if stop() {
			return false
		}
		<-closed
		return true
	}
}

// upgradeOutbound: security step, InterceptSecured(Outbound), read the
// verdict. raw is closed on failure.
func (u *upgrader) upgradeOutbound(ctx context.Context, raw net.Conn, expected peer.ID) (Conn, error) {
	done := guard(ctx, raw)
	_ = raw.SetDeadline(time.Now().Add(u.timeout))

	c, err := u.sec.secureOutbound(raw, expected)
	if err != nil {
		done()
		raw.Close()
		if lr := (*ListenerRefusedError)(nil); errors.As(err, &lr) {
			u.stats.outRemoteRefused.Add(1)
			return nil, err
		}
		u.stats.outFailed.Add(1)
		return nil, u.failure(ctx, u.sec.name(), err)
	}
	if err := u.gater.InterceptSecured(Outbound, c.RemotePeer(), raw.RemoteAddr()); err != nil {
		done()
		c.Close()
		u.stats.outRefused.Add(1)
		return nil, fmt.Errorf("%w: link to %s at %s: %w", ErrGated, c.RemotePeer().ShortString(), raw.RemoteAddr(), err)
	}
	code, reason, err := readVerdict(c)
	if err != nil {
		done()
		c.Close()
		u.stats.outFailed.Add(1)
		return nil, u.failure(ctx, "admission verdict", mapRemoteAlert(err))
	}
	if code != 0 {
		done()
		c.Close()
		u.stats.outRemoteRefused.Add(1)
		return nil, &RemoteRefusedError{Code: code, Reason: reason}
	}
	if done() {
		c.Close()
		u.stats.outFailed.Add(1)
		return nil, u.failure(ctx, "admission verdict", ctx.Err())
	}
	_ = raw.SetDeadline(time.Time{})
	u.stats.outOK.Add(1)
	return c, nil
}

// upgradeInbound: security step, InterceptSecured(Inbound), admit,
// write the verdict. conn is the accepted socket, wrapped by the
// RawConnWrapper, its first byte read already and replayed; deadline
// bounds the whole (it counts from the accept). admit, called once the
// gater has allowed the link, may refuse it: its error, a
// *RefusalError, is sent as the verdict and returned. conn is closed on
// failure and on refusal. ctx is the listener's: it ends when the
// listener closes. Outcomes are counted by the caller.
func (u *upgrader) upgradeInbound(ctx context.Context, conn net.Conn, deadline time.Time, admit func(Conn) error) (Conn, error) {
	done := guard(ctx, conn)
	_ = conn.SetDeadline(deadline)

	c, err := u.sec.secureInbound(conn)
	if err != nil {
		done()
		conn.Close()
		return nil, u.failure(ctx, u.sec.name(), err)
	}
	var (
		code   RefusalCode
		reason string
		aerr   error
	)
	gerr := u.gater.InterceptSecured(Inbound, c.RemotePeer(), conn.RemoteAddr())
	if gerr == nil {
		aerr = admit(c)
	}
	switch {
	case gerr != nil:
		code, reason = refusalOf(gerr)
	case aerr != nil:
		code, reason = refusalOf(aerr)
	}
	werr := writeVerdict(c, code, reason)
	switch {
	case gerr != nil:
		done()
		c.Close()
		return nil, fmt.Errorf("%w: link from %s (%s): %w", ErrGated, c.RemotePeer().ShortString(), code, gerr)
	case aerr != nil:
		done()
		c.Close()
		return nil, fmt.Errorf("transport: link from %s at %s refused (%s): %w", c.RemotePeer().ShortString(), conn.RemoteAddr(), code, aerr)
	case werr != nil:
		done()
		c.Close()
		return nil, u.failure(ctx, "admission verdict", werr)
	}
	if done() {
		c.Close()
		return nil, u.failure(ctx, "admission verdict", ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// failure turns an error of stage into what the caller sees: the
// context's error if it ended, ErrHandshakeTimeout if the deadline
// passed, our own errors as they are, anything else prefixed.
func (u *upgrader) failure(ctx context.Context, stage string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("transport: %s aborted: %w", stage, ctxErr(ctx))
	case isTimeout(err):
		return fmt.Errorf("%w: %s not done within %v (%w)", ErrHandshakeTimeout, stage, u.timeout, err)
	case isOurs(err):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe):
		return fmt.Errorf("transport: %s: remote closed the connection (%w)", stage, err)
	}
	return fmt.Errorf("transport: %s: %w", stage, err)
}

// ctxErr returns ctx's error, with its cause if that says more.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cause)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isOurs reports whether err already carries one of our sentinels, and
// so its "transport: " prefix and details.
func isOurs(err error) bool {
	for _, s := range [...]error{
		ErrPeerIDMismatch, ErrNetworkMismatch, ErrCertificateRejected,
		ErrInvalidCertificate, ErrProtocol, ErrGated, ErrRemoteRefused, ErrHandshakeTimeout,
		ErrListenerBusy, ErrAddrConnLimit,
	} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
