package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// MemoryNetwork is an in-process network of Memory transports: a
// namespace of listen addresses. Links are net.Pipe pairs.
//
// INSECURE: the memory transport authenticates nothing. Its "handshake"
// is a plaintext hello in which each side merely claims an ID; any
// code on the network can claim any ID. It exists for tests and
// simulations, never for real traffic.
type MemoryNetwork struct {
	mu        sync.Mutex
	listeners map[string]*memListener
	next      uint64 // last number used for a generated address
}

// NewMemoryNetwork returns an empty network.
func NewMemoryNetwork() *MemoryNetwork {
	return &MemoryNetwork{listeners: make(map[string]*memListener)}
}

// MemoryAddr is an address on a MemoryNetwork; its Network is "memory".
type MemoryAddr string

// Network returns "memory".
func (MemoryAddr) Network() string { return "memory" }

// String returns the address itself.
func (a MemoryAddr) String() string { return string(a) }

// Memory is a transport on a MemoryNetwork. It runs the same admission
// sequence as TCP (gater hooks, verdict, timeouts, pending limit), with
// the security step replaced by the memory hello.
//
// INSECURE: the memory hello authenticates nothing; a peer's ID is what
// it claims. For tests and simulations only.
//
// The memory hello, dialer first, then listener:
//
//	[4] magic and version "PLM\x01"
//	[1] n network length (1..64)
//	[n] network
//	[32] claimed peer ID
//
// Each side checks the other's network (ErrNetworkMismatch); the dialer
// checks the claimed ID against the one it expected (ErrPeerIDMismatch).
// A listener that refuses the socket before the hello (busy, or the
// dialer's address at its limit) sends the five-byte refusal marker
// instead of its hello, "PLNK" and a code, as over TCP: the dialer reads
// it as a hello header and reports ErrListenerBusy or ErrAddrConnLimit.
//
// A dialer content with the listener's hello then acknowledges it with
// one byte, 0x06, before reading the verdict: the listener times the
// round trip from its hello to the acknowledgement (Conn.HandshakeRTT),
// and the exchange takes two round trips, as TLS 1.3 with its verdict
// does (less the TCP connect), so that simulations over shaped memory
// links see realistic dial times.
type Memory struct {
	net *MemoryNetwork
	up  *upgrader
}

var _ Transport = (*Memory)(nil)

// NewTransport validates cfg and returns a transport on n.
func (n *MemoryNetwork) NewTransport(cfg Config) (*Memory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sec := &memSecurer{local: cfg.Identity.ID(), network: cfg.Network}
	return &Memory{net: n, up: newUpgrader(cfg, sec)}, nil
}

// Dial connects to the listener at addr; see Transport.Dial. Nobody
// listening there gives an error wrapping ErrNoListener and
// syscall.ECONNREFUSED.
func (m *Memory) Dial(ctx context.Context, addr string, expected peer.ID) (Conn, error) {
	return m.up.dial(ctx, addr, expected, func(ctx context.Context, addr string) (net.Conn, time.Duration, error) {
		c, err := m.net.dialRaw(ctx, addr)
		return c, 0, err
	})
}

// Listen binds addr on the network: any non-empty string; "" assigns a
// free one ("mem-1", "mem-2", ...). An address in use gives an error
// wrapping syscall.EADDRINUSE.
func (m *Memory) Listen(addr string) (Listener, error) {
	raw, err := m.net.listenRaw(addr)
	if err != nil {
		return nil, err
	}
	return newListener(m.up, raw), nil
}

// LocalPeer returns the node's ID.
func (m *Memory) LocalPeer() peer.ID { return m.up.local }

// Stats returns the transport's counters.
func (m *Memory) Stats() Stats { return m.up.stats.snapshot() }

// listenRaw registers a raw listener at addr.
func (n *MemoryNetwork) listenRaw(addr string) (*memListener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr == "" {
		for {
			n.next++
			addr = "mem-" + strconv.FormatUint(n.next, 10)
			if _, used := n.listeners[addr]; !used {
				break
			}
		}
	} else if _, used := n.listeners[addr]; used {
		return nil, fmt.Errorf("transport: listen memory %q: %w", addr, syscall.EADDRINUSE)
	}
	l := &memListener{net: n, addr: MemoryAddr(addr), conns: make(chan net.Conn), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// noListenerError is a Memory dial to an address nobody listens on.
type noListenerError struct{}

func (noListenerError) Error() string { return "no listener (connection refused)" }

func (noListenerError) Is(target error) bool {
	return target == ErrNoListener || target == errConnRefused
}

// dialRaw connects a net.Pipe to the listener at addr.
func (n *MemoryNetwork) dialRaw(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[addr]
	var local MemoryAddr
	if l != nil {
		n.next++
		local = MemoryAddr("mem-dial-" + strconv.FormatUint(n.next, 10))
	}
	n.mu.Unlock()
	if l == nil {
		return nil, noListenerError{}
	}
	a, b := net.Pipe()
	client := &memConn{Conn: a, local: local, remote: l.addr}
	server := &memConn{Conn: b, local: l.addr, remote: local}
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		a.Close()
		b.Close()
		return nil, noListenerError{}
	case <-ctx.Done():
		a.Close()
		b.Close()
		return nil, ctxErr(ctx)
	}
}

// memListener is the raw net.Listener of a memory address.
type memListener struct {
	net   *MemoryNetwork
	addr  MemoryAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		delete(l.net.listeners, string(l.addr))
		l.net.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// memConn is one end of a net.Pipe with memory addresses.
type memConn struct {
	net.Conn
	local, remote MemoryAddr
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

// memSecurer is the memory transport's security step: the plaintext
// hello. It authenticates nothing.
type memSecurer struct {
	local   peer.ID
	network string
}

const helloMagic = "PLM\x01"

// helloAck is the dialer's acknowledgement of the listener's hello.
const helloAck = 0x06

// maxHelloLen is the longest hello: magic, length, network, ID.
const maxHelloLen = len(helloMagic) + 1 + MaxNetworkLen + peer.IDLen

func (s *memSecurer) name() string { return "memory hello" }

func (s *memSecurer) secureOutbound(raw net.Conn, expected peer.ID) (Conn, error) {
	sent := time.Now()
	if err := writeHello(raw, s.network, s.local); err != nil {
		return nil, err
	}
	network, id, err := readHello(raw)
	if err != nil {
		var m *markerError
		if errors.As(err, &m) {
			return nil, listenerRefused(raw.RemoteAddr(), m.code)
		}
		return nil, err
	}
	rtt := time.Since(sent)
	if network != s.network {
		return nil, fmt.Errorf("%w: we are on %q, remote is on %q", ErrNetworkMismatch, s.network, network)
	}
	if id != expected {
		return nil, fmt.Errorf("%w: expected %s, got %s (claimed, unauthenticated)", ErrPeerIDMismatch, expected, id)
	}
	if _, err := raw.Write([]byte{helloAck}); err != nil {
		return nil, err
	}
	return &plainConn{Conn: raw, linkInfo: linkInfo{local: s.local, remote: id, dir: Outbound, rtt: rtt}}, nil
}

func (s *memSecurer) secureInbound(raw net.Conn) (Conn, error) {
	network, id, err := readHello(raw)
	if err != nil {
		return nil, err
	}
	// Answer even on a mismatch, so the dialer can tell what is wrong.
	sent := time.Now()
	if err := writeHello(raw, s.network, s.local); err != nil {
		return nil, err
	}
	if network != s.network {
		return nil, fmt.Errorf("%w: we are on %q, remote is on %q", ErrNetworkMismatch, s.network, network)
	}
	var ack [1]byte
	if _, err := io.ReadFull(raw, ack[:]); err != nil {
		return nil, err // io.EOF: the dialer refused our hello
	}
	if ack[0] != helloAck {
		return nil, fmt.Errorf("%w: memory hello acknowledged with 0x%02x, want 0x%02x", ErrProtocol, ack[0], helloAck)
	}
	rtt := time.Since(sent)
	return &plainConn{Conn: unwrapReplay(raw), linkInfo: linkInfo{local: s.local, remote: id, dir: Inbound, rtt: rtt}}, nil
}

func appendHello(b []byte, network string, id peer.ID) []byte {
	b = append(b, helloMagic...)
	b = append(b, byte(len(network)))
	b = append(b, network...)
	return append(b, id[:]...)
}

func writeHello(w io.Writer, network string, id peer.ID) error {
	var buf [maxHelloLen]byte
	_, err := w.Write(appendHello(buf[:0], network, id))
	return err
}

// readHello reads exactly one hello (at most maxHelloLen bytes).
// Malformed input gives an error wrapping ErrProtocol.
func readHello(r io.Reader) (string, peer.ID, error) {
	var buf [maxHelloLen]byte
	hdr := buf[:len(helloMagic)+1]
	if n, err := io.ReadFull(r, hdr); err != nil {
		return "", peer.ID{}, helloReadError(err, n, len(hdr))
	}
	if code, ok := parseMarker(hdr); ok {
		return "", peer.ID{}, &markerError{code: code}
	}
	if string(hdr[:len(helloMagic)]) != helloMagic {
		return "", peer.ID{}, fmt.Errorf("%w: memory hello starts with %q, want %q", ErrProtocol, hdr[:len(helloMagic)], helloMagic)
	}
	n := int(hdr[len(helloMagic)])
	if n == 0 || n > MaxNetworkLen {
		return "", peer.ID{}, fmt.Errorf("%w: memory hello network length %d, want 1..%d", ErrProtocol, n, MaxNetworkLen)
	}
	body := buf[len(hdr) : len(hdr)+n+peer.IDLen]
	if got, err := io.ReadFull(r, body); err != nil {
		return "", peer.ID{}, helloReadError(err, got, len(body))
	}
	network := string(body[:n])
	if err := checkNetwork(network); err != nil {
		return "", peer.ID{}, fmt.Errorf("%w: memory hello network %w", ErrProtocol, err)
	}
	id, err := peer.IDFromBytes(body[n:])
	if err != nil {
		return "", peer.ID{}, fmt.Errorf("%w: memory hello: %w", ErrProtocol, err)
	}
	return network, id, nil
}

// markerError is a refusal marker read where a memory hello was
// expected: a dialer maps it to the listener's refusal; for a listener
// it is a protocol violation.
type markerError struct{ code byte }

func (e *markerError) Error() string {
	return fmt.Sprintf("%v: memory hello is a refusal marker (code %d)", ErrProtocol, e.code)
}

func (e *markerError) Unwrap() error { return ErrProtocol }

func helloReadError(err error, got, want int) error {
	switch {
	case errors.Is(err, io.EOF) && got == 0:
		return io.EOF
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated memory hello: %d of %d bytes", ErrProtocol, got, want)
	}
	return err
}
