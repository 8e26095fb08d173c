package transport

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
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
	return &TCP{up: newUpgrader(cfg, sec), sec: sec}, nil
}

// Dial connects to addr ("host:port") and returns the link once the
// remote proved the key expected and admitted us. ctx bounds the whole
// dial; Config.HandshakeTimeout bounds the part after the TCP connect.
func (t *TCP) Dial(ctx context.Context, addr string, expected peer.ID) (Conn, error) {
	return t.up.dial(ctx, addr, expected, t.dialRaw)
}

func (t *TCP) dialRaw(ctx context.Context, addr string) (net.Conn, error) {
	return t.dialer.DialContext(ctx, "tcp", addr)
}

// Listen binds addr ("host:port"; port 0 picks one, see Listener.Addr).
func (t *TCP) Listen(addr string) (Listener, error) {
	raw, err := t.lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	return newListener(t.up, raw), nil
}

// LocalPeer returns the node's ID.
func (t *TCP) LocalPeer() peer.ID { return t.up.local }

// Certificate returns the node's self-signed certificate.
func (t *TCP) Certificate() *x509.Certificate { return t.sec.certs[0].Leaf }

// Stats returns the transport's counters.
func (t *TCP) Stats() Stats { return t.up.stats.snapshot() }
