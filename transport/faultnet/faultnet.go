// Package faultnet makes links behave like real networks for tests and
// simulations.
//
// Link shapes a connection's write direction: latency, a bandwidth
// bottleneck and its queue. ShapeRaw plugs it into
// transport.Config.RawConnWrapper, under the security handshake; it runs
// on the fake clock of testing/synctest over net.Pipe (the memory
// transport).
//
// Transport wraps a transport.Transport so that its links can fail the
// ways real networks do: go silent while the socket stays open (a black
// hole: a pulled cable, a stateful firewall dropping the flow, a frozen
// host), or die at once.
//
// A black hole is silent on both ends of the wrapped side: reads block
// and writes report success while their bytes vanish, so nothing but a
// timeout can notice it. It is final for the links it hits (bytes lost
// in the middle of a TLS stream cannot be recovered); links made after
// Heal are healthy.
package faultnet

import (
	"context"
	"net"
	"sync"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// Transport is a transport.Transport whose links can be failed on demand.
type Transport struct {
	inner transport.Transport

	mu    sync.Mutex
	conns map[*Conn]struct{}
	hole  bool // links made while set start black-holed
	dials int
}

var _ transport.Transport = (*Transport)(nil)

// Wrap returns t with fault injection.
func Wrap(t transport.Transport) *Transport {
	return &Transport{inner: t, conns: make(map[*Conn]struct{})}
}

// Dial implements transport.Transport.
func (t *Transport) Dial(ctx context.Context, addr string, expected peer.ID) (transport.Conn, error) {
	t.mu.Lock()
	t.dials++
	t.mu.Unlock()
	c, err := t.inner.Dial(ctx, addr, expected)
	if err != nil {
		return nil, err
	}
	return t.track(c), nil
}

// Listen implements transport.Transport.
func (t *Transport) Listen(addr string) (transport.Listener, error) {
	l, err := t.inner.Listen(addr)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: l, t: t}, nil
}

// Dials returns how many dials have been made through t.
func (t *Transport) Dials() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dials
}

// BlackHole silences every open link and every link made until Heal.
func (t *Transport) BlackHole() {
	t.mu.Lock()
	t.hole = true
	conns := make([]*Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.BlackHole()
	}
}

// Heal makes new links healthy again. Links already black-holed stay so.
func (t *Transport) Heal() {
	t.mu.Lock()
	t.hole = false
	t.mu.Unlock()
}

// Sever closes every open link at once.
func (t *Transport) Sever() {
	t.mu.Lock()
	conns := make([]*Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (t *Transport) track(inner transport.Conn) *Conn {
	c := &Conn{Conn: inner, t: t, silenced: make(chan struct{}), closed: make(chan struct{})}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	hole := t.hole
	t.mu.Unlock()
	if hole {
		c.BlackHole()
	}
	return c
}

type listener struct {
	transport.Listener
	t *Transport
}

func (l *listener) Accept() (transport.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.t.track(c), nil
}

// Conn is a link that can be black-holed.
type Conn struct {
	transport.Conn
	t *Transport

	holeOnce  sync.Once
	silenced  chan struct{} // closed by BlackHole
	closeOnce sync.Once
	closed    chan struct{}
}

// BlackHole silences the link: reads block until Close, writes vanish.
func (c *Conn) BlackHole() {
	c.holeOnce.Do(func() { close(c.silenced) })
}

func (c *Conn) isSilenced() bool {
	select {
	case <-c.silenced:
		return true
	default:
		return false
	}
}

// Read blocks forever (until Close) once the link is black-holed. A read
// already waiting on the socket when the hole opens returns what arrives
// and the next one blocks; data that arrives later is never seen.
func (c *Conn) Read(p []byte) (int, error) {
	if c.isSilenced() {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.isSilenced() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

// Write reports success and drops the bytes once the link is black-holed.
func (c *Conn) Write(p []byte) (int, error) {
	if c.isSilenced() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Close closes the link and releases blocked reads.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}
