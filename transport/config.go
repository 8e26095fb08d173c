package transport

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

// Direction tells which side opened a link.
type Direction uint8

// Directions.
const (
	Inbound  Direction = 1 // the remote dialed us
	Outbound Direction = 2 // we dialed the remote
)

// String returns "inbound", "outbound" or "direction(N)".
func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// Conn is an established, admitted link: a net.Conn that knows both
// peers and who dialed. Its deadlines are clear when it is returned.
//
// Close returns within a fraction of a second whatever the remote does:
// on TCP it sends the TLS close_notify if the socket takes it within
// 200 ms, so a healthy remote reads a clean EOF, and otherwise (the remote
// stopped reading and the send buffer is full) closes the socket without
// it. Either way every Read and Write blocked on the link then returns
// an error.
type Conn interface {
	net.Conn
	LocalPeer() peer.ID
	RemotePeer() peer.ID
	Direction() Direction
	// HandshakeRTT is the round-trip time measured while the link was
	// established, 0 if none could be. It is an estimate from one
	// sample, meant for sizing windows (the bandwidth-delay product),
	// not a figure to report:
	//
	//   - TCP dialer: its TCP connect (SYN to SYN-ACK, answered by the
	//     remote kernel, so no application time is in it). With a
	//     Config.RawConnWrapper, from its ClientHello to the first bytes
	//     of the listener's flight instead (the connect ran beneath the
	//     wrapper and missed what it adds), which includes the
	//     listener's crypto.
	//   - TCP listener: from its flight (ServerHello to Finished) to the
	//     first bytes of the dialer's answer, one round trip plus the
	//     dialer's crypto (a few hundred µs on a PC; more under -race or
	//     load). Not from the accept: the ClientHello may arrive well
	//     after the TCP handshake (a wrapper delays it, for one).
	//   - Memory dialer: from its hello to the listener's.
	//   - Memory listener: from its hello to the dialer's
	//     acknowledgement.
	//
	// All but the TCP connect are taken just above the RawConnWrapper,
	// so they include the delays a shaping wrapper adds.
	HandshakeRTT() time.Duration
}

// Listener hands out the inbound links a transport admitted.
type Listener interface {
	// Accept returns the next admitted link. After Close it returns an
	// error wrapping net.ErrClosed.
	Accept() (Conn, error)
	// Addr returns the address the listener is bound to.
	Addr() net.Addr
	// Close stops accepting, aborts handshakes in flight, closes admitted
	// links nobody Accepted, and returns once all the listener's
	// goroutines have ended. It is idempotent.
	Close() error
}

// Transport establishes links: Dial for outbound, Listen for inbound.
type Transport interface {
	// Dial connects to addr and returns the link once the remote proved
	// the ID expected and its verdict admitted us. ctx bounds the whole
	// dial, handshake included.
	Dial(ctx context.Context, addr string, expected peer.ID) (Conn, error)
	// Listen binds addr and starts admitting inbound links.
	Listen(addr string) (Listener, error)
}

// Gater is consulted at each step of link establishment; a non-nil error
// refuses the link. Methods may be called concurrently.
//
// InterceptSecured on the listening side decides the admission verdict:
// the error's text is sent to the dialer as the reason, and a
// *RefusalError (see Refuse) in its chain chooses the code.
type Gater interface {
	// InterceptDial is called before an outbound dial touches the network.
	InterceptDial(id peer.ID, addr string) error
	// InterceptAccept is called for each inbound socket before its
	// handshake; a refusal closes the socket. It runs on the listener's
	// accept loop, so it must be quick.
	InterceptAccept(remote net.Addr) error
	// InterceptSecured is called once the remote's ID is proven, in both
	// directions.
	InterceptSecured(dir Direction, id peer.ID, remote net.Addr) error
}

// GaterFuncs implements Gater with optional functions; a nil field allows.
type GaterFuncs struct {
	Dial    func(id peer.ID, addr string) error
	Accept  func(remote net.Addr) error
	Secured func(dir Direction, id peer.ID, remote net.Addr) error
}

// InterceptDial calls g.Dial if set.
func (g GaterFuncs) InterceptDial(id peer.ID, addr string) error {
	if g.Dial == nil {
		return nil
	}
	return g.Dial(id, addr)
}

// InterceptAccept calls g.Accept if set.
func (g GaterFuncs) InterceptAccept(remote net.Addr) error {
	if g.Accept == nil {
		return nil
	}
	return g.Accept(remote)
}

// InterceptSecured calls g.Secured if set.
func (g GaterFuncs) InterceptSecured(dir Direction, id peer.ID, remote net.Addr) error {
	if g.Secured == nil {
		return nil
	}
	return g.Secured(dir, id, remote)
}

// Defaults for zero Config fields.
const (
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultFirstByteTimeout     = 2 * time.Second
	DefaultMaxPendingHandshakes = 64
	DefaultMaxPendingPerIP      = 8
	DefaultMaxPendingPerSubnet  = 16
	DefaultMaxInboundPerIP      = 8
	DefaultNotSentLowat         = 32 << 10 // see Config.NotSentLowat
)

// MaxNetworkLen is the longest Config.Network.
const MaxNetworkLen = 64

// Config configures a transport.
type Config struct {
	// Identity is the node's key pair; its ID is what remotes dial.
	// Required.
	Identity *peer.Identity
	// Network names the network the node belongs to (e.g. a chain ID);
	// nodes of different networks refuse each other during the handshake.
	// Required: 1..64 bytes of printable ASCII, no spaces.
	Network string
	// HandshakeTimeout bounds the handshake plus the admission verdict,
	// on both sides; on the listening side it counts from the socket's
	// accept, the wait for its first byte included. 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// FirstByteTimeout bounds the wait for an inbound socket's first
	// byte: a socket that sends nothing for that long after its accept
	// is closed, well before HandshakeTimeout would close it. An honest
	// dialer sends its ClientHello (or hello) at once. 0 means
	// DefaultFirstByteTimeout (2 s); it is also when a pending handshake
	// becomes "slow" and may be evicted (see MaxPendingHandshakes). A
	// value above HandshakeTimeout acts as HandshakeTimeout.
	FirstByteTimeout time.Duration
	// MaxPendingHandshakes bounds the inbound sockets in flight per
	// listener: from their accept until their link is handed to Accept,
	// admitted links waiting for Accept included (an application that
	// stops calling Accept stops the listener from taking more work).
	// 0 means DefaultMaxPendingHandshakes (64).
	//
	// MaxPendingPerIP and MaxPendingPerSubnet bound them further per
	// source IP and per source subnet (/24 for IPv4, /64 for IPv6), so
	// that one address cannot take the whole table. 0 means
	// DefaultMaxPendingPerIP (8) and DefaultMaxPendingPerSubnet (16);
	// negative means no such cap. They do not apply to addresses in
	// LimitExempt, nor to memory addresses, which have no IP.
	//
	// A socket that would exceed a cap takes the place of another in
	// that cap's scope (the narrowest full one): the oldest that has
	// sent nothing yet, else the oldest whose handshake has run longer
	// than FirstByteTimeout, which is closed. If there is neither, the
	// new socket is refused: the listener writes a short plaintext
	// marker before closing it, and the dialer's error wraps
	// ErrListenerBusy. Admitted links waiting for Accept are never
	// evicted.
	MaxPendingHandshakes int
	MaxPendingPerIP      int
	MaxPendingPerSubnet  int
	// MaxInboundPerIP bounds the established inbound links per remote
	// address (an IPv4 address, or an IPv6 /64) over all the
	// transport's listeners: a link counts from its admission (waiting
	// for Accept included) until its Conn is closed. A socket from an
	// address at the limit is refused at its accept, before any TLS
	// work, with the marker; the dialer's error wraps ErrAddrConnLimit.
	// Pending handshakes do not count (they have their own caps, above).
	// 0 means DefaultMaxInboundPerIP (8, as libp2p allows per IPv4
	// address); negative means no limit. It does not apply to addresses
	// in LimitExempt, nor to memory addresses.
	MaxInboundPerIP int
	// LimitExempt lists the remote addresses exempt from the per-IP and
	// per-subnet caps (MaxPendingPerIP, MaxPendingPerSubnet,
	// MaxInboundPerIP), e.g. a node's own sentries behind one NAT. They
	// still count against MaxPendingHandshakes. IPv4 remotes are matched
	// as IPv4, also when they arrive IPv4-mapped on an IPv6 socket.
	// Loopback is not exempt unless listed.
	LimitExempt []netip.Prefix
	// Gater is consulted at each step; nil allows everything.
	Gater Gater
	// Logger receives debug events per link and info events per
	// listener. The zero value logs nothing.
	Logger zerolog.Logger

	// RawConnWrapper, if set, wraps every raw connection of the
	// transport, dialed and accepted, TCP and memory, before the
	// security handshake, so that what it does sits under TLS as a real
	// network would: a testing and simulation hook, for shaping links
	// (faultnet.Link.Wrap: latency, bandwidth, queue) and injecting
	// faults. The conn it returns must honour deadlines (the handshake
	// timeout is enforced through them) and Close. nil wraps nothing.
	RawConnWrapper func(net.Conn) net.Conn

	// NotSentLowat sets TCP_NOTSENT_LOWAT on every TCP link (Linux; a
	// no-op elsewhere and on the memory transport): the kernel takes
	// more bytes from a write only while fewer than this many are
	// queued in it unsent. 0 means DefaultNotSentLowat (32 KiB);
	// negative leaves the kernel's default (no limit). Setting it is
	// best effort: an error is logged at debug level and the link
	// proceeds.
	//
	// Why: without it the kernel accepts writes until its send buffer
	// (autotuned up to 4 MiB) is full, so a frame queued now waits
	// behind megabytes written earlier and the sender's priority order
	// never reaches the wire. On loopback with a reader taking 10 MB/s,
	// the kernel held up to 4.1 MB unsent without the option (≈ 400 ms
	// of data ahead of any urgent frame), 142 KB with 128 KiB, 36 KB
	// with 16 or 32 KiB. The value trades head-of-line delay on slow
	// links against idling fast ones: whatever sits unsent is ahead of
	// the next urgent frame (32 KiB: 2.6 ms at 100 Mbit/s, 0.26 ms at
	// 1 Gbit/s; 128 KiB would be 10 ms at 100 Mbit/s), and it must cover
	// the time the writer takes to wake and refill it, or the link idles
	// (32 KiB covers 260 µs at 1 Gbit/s; raise it for faster links).
	//
	// Throughput is not measurably affected on loopback (one TCP+TLS
	// link, 64 KiB writes, BenchmarkTLSWriteLowat, 2 cores, medians of
	// 6–8 runs, run-to-run spread ±10%): 16 KiB 1.74 GB/s, 32 KiB
	// 1.61–1.71 GB/s, 128 KiB 1.59–1.60 GB/s, off 1.71–1.75 GB/s.
	NotSentLowat int
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Identity == nil {
		return cfg, fmt.Errorf("%w: Identity is nil", ErrInvalidConfig)
	}
	if cfg.Identity.ID().IsZero() {
		return cfg, fmt.Errorf("%w: Identity has the zero ID (use peer.GenerateIdentity)", ErrInvalidConfig)
	}
	if err := checkNetwork(cfg.Network); err != nil {
		return cfg, fmt.Errorf("%w: Network %w", ErrInvalidConfig, err)
	}
	switch {
	case cfg.HandshakeTimeout < 0:
		return cfg, fmt.Errorf("%w: HandshakeTimeout %v is negative", ErrInvalidConfig, cfg.HandshakeTimeout)
	case cfg.HandshakeTimeout == 0:
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	switch {
	case cfg.FirstByteTimeout < 0:
		return cfg, fmt.Errorf("%w: FirstByteTimeout %v is negative", ErrInvalidConfig, cfg.FirstByteTimeout)
	case cfg.FirstByteTimeout == 0:
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	switch {
	case cfg.MaxPendingHandshakes < 0:
		return cfg, fmt.Errorf("%w: MaxPendingHandshakes %d is negative", ErrInvalidConfig, cfg.MaxPendingHandshakes)
	case cfg.MaxPendingHandshakes == 0:
		cfg.MaxPendingHandshakes = DefaultMaxPendingHandshakes
	}
	if cfg.MaxPendingPerIP == 0 {
		cfg.MaxPendingPerIP = DefaultMaxPendingPerIP
	}
	if cfg.MaxPendingPerSubnet == 0 {
		cfg.MaxPendingPerSubnet = DefaultMaxPendingPerSubnet
	}
	if cfg.MaxInboundPerIP == 0 {
		cfg.MaxInboundPerIP = DefaultMaxInboundPerIP
	}
	exempt := make([]netip.Prefix, 0, len(cfg.LimitExempt))
	for i, p := range cfg.LimitExempt {
		if !p.IsValid() {
			return cfg, fmt.Errorf("%w: LimitExempt[%d] %q is not a valid prefix", ErrInvalidConfig, i, p)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		exempt = append(exempt, p.Masked())
	}
	cfg.LimitExempt = exempt
	switch {
	case cfg.NotSentLowat > math.MaxInt32:
		return cfg, fmt.Errorf("%w: NotSentLowat %d is over %d", ErrInvalidConfig, cfg.NotSentLowat, math.MaxInt32)
	case cfg.NotSentLowat == 0:
		cfg.NotSentLowat = DefaultNotSentLowat
	}
	if cfg.Gater == nil {
		cfg.Gater = GaterFuncs{}
	}
	return cfg, nil
}

// checkNetwork validates a network name; the error text completes
// "Network ...".
func checkNetwork(s string) error {
	if s == "" {
		return errString("is empty")
	}
	if len(s) > MaxNetworkLen {
		return fmt.Errorf("is %d bytes, max %d", len(s), MaxNetworkLen)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ':
			return fmt.Errorf("%q contains a space", s)
		case c < 0x21 || c > 0x7e:
			return fmt.Errorf("%q contains byte 0x%02x at offset %d, want printable ASCII", s, c, i)
		}
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }
