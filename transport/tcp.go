package transport

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// TCP is the production transport: TCP sockets secured by mutual TLS 1.3
// with self-signed identity certificates. It is safe for concurrent use.
type TCP struct {
	up     *upgrader
	sec    *tlsSecurer
	dialer net.Dialer
	lc     net.ListenConfig
	lowat  int // Config.NotSentLowat; negative: leave the kernel's
}

var _ Transport = (*TCP)(nil)

// NewTCP validates cfg and creates the node's certificate.
func NewTCP(cfg Config) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sec, err := newTLSSecurer(cfg, time.Now)
	if err != nil {
		return nil, err
	}
	return &TCP{up: newUpgrader(cfg, sec), sec: sec, lowat: cfg.NotSentLowat}, nil
}

// Dial connects to addr ("host:port") and returns the link once the
// remote proved the key expected and admitted us. ctx bounds the whole
// dial; Config.HandshakeTimeout bounds the part after the TCP connect.
func (t *TCP) Dial(ctx context.Context, addr string, expected peer.ID) (Conn, error) {
	return t.up.dial(ctx, addr, expected, t.dialRaw)
}

// dialRaw connects and times the connect: from the socket's creation
// (after any name resolution) to the connect's completion, one round
// trip.
func (t *TCP) dialRaw(ctx context.Context, addr string) (net.Conn, time.Duration, error) {
	d := t.dialer
	var (
		mu     sync.Mutex
		starts = make(map[string]time.Time, 1) // by address tried
		last   time.Time
	)
	d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
		now := time.Now()
		mu.Lock()
		starts[address], last = now, now
		mu.Unlock()
		return nil
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	end := time.Now()
	mu.Lock()
	start, ok := starts[c.RemoteAddr().String()]
	if !ok {
		start = last
	}
	mu.Unlock()
	var rtt time.Duration
	if !start.IsZero() {
		rtt = end.Sub(start)
	}
	t.tune(c)
	return c, rtt, nil
}

// tune sets the socket options of a new TCP connection.
func (t *TCP) tune(c net.Conn) {
	if t.lowat < 0 {
		return
	}
	if err := setNotSentLowat(c, t.lowat); err != nil {
		if e := t.up.log.Debug(); e.Enabled() {
			e.Err(err).Stringer("addr", c.RemoteAddr()).Int("not_sent_lowat", t.lowat).Msg("cannot set TCP_NOTSENT_LOWAT")
		}
	}
}

// tcpListener tunes each accepted socket.
type tcpListener struct {
	net.Listener
	t *TCP
}

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.t.tune(c)
	return c, nil
}

// Listen binds addr ("host:port"; port 0 picks one, see Listener.Addr).
func (t *TCP) Listen(addr string) (Listener, error) {
	raw, err := t.lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	return newListener(t.up, &tcpListener{Listener: raw, t: t}), nil
}

// LocalPeer returns the node's ID.
func (t *TCP) LocalPeer() peer.ID { return t.up.local }

// Certificate returns the node's self-signed certificate.
func (t *TCP) Certificate() *x509.Certificate { return t.sec.certs[0].Leaf }

// Stats returns the transport's counters.
func (t *TCP) Stats() Stats { return t.up.stats.snapshot() }
