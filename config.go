package peerlink

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/peerstore"
	"github.com/peerlink/peerlink/score"
	"github.com/peerlink/peerlink/transport"
)

// Defaults used by DefaultConfig, and by New for duration fields left zero.
const (
	DefaultNetwork               = "peerlink"
	DefaultHandshakeTimeout      = transport.DefaultHandshakeTimeout
	DefaultMaxPendingHandshakes  = transport.DefaultMaxPendingHandshakes
	DefaultFirstByteTimeout      = transport.DefaultFirstByteTimeout
	DefaultMaxPendingPerIP       = transport.DefaultMaxPendingPerIP
	DefaultMaxPendingPerSubnet   = transport.DefaultMaxPendingPerSubnet
	DefaultMaxInboundPerIP       = transport.DefaultMaxInboundPerIP
	DefaultDialTimeout           = 15 * time.Second
	DefaultMaxConnections        = 400
	DefaultMaxInboundConnections = 300
	DefaultMaxStreamsPerPeer     = 256
	DefaultStreamHeaderTimeout   = 10 * time.Second
	DefaultEventBuffer           = 256

	DefaultMaxStreams       = 8192
	DefaultTargetBandwidth  = 12_500_000 // bytes/s: 100 Mbit/s
	DefaultMaxStreamWindow  = 16 << 20
	DefaultPeerMemoryBudget = 135 << 20 // 256 streams at the minimum window: 256 × mux.StreamMemory(256 KiB)
	DefaultNodeMemoryBudget = 1 << 30

	DefaultDialAddrDelay   = 250 * time.Millisecond
	DefaultDialAddrTimeout = 10 * time.Second
	DefaultAddrTTL         = time.Hour
	DefaultRecordRetention = 10 * time.Minute
	DefaultPruneInterval   = time.Minute

	DefaultBackoffInitialInterval     = 1 * time.Second
	DefaultBackoffMultiplier          = 2.0
	DefaultBackoffRandomizationFactor = 0.5
	DefaultBackoffMaxInterval         = 60 * time.Second
	DefaultBackoffMaxElapsedTime      = 5 * time.Minute
)

// TransportFunc builds the transport a manager dials and listens with. The
// manager fills in the transport.Config: its identity and network, the
// handshake settings, and a gater that puts the manager's own admission
// rules (limits, one link per peer) behind Config.Gater.
type TransportFunc func(transport.Config) (transport.Transport, error)

// TCP is the default TransportFunc: TCP with mutual TLS 1.3.
func TCP(cfg transport.Config) (transport.Transport, error) {
	return transport.NewTCP(cfg)
}

// MemoryTransport returns a TransportFunc on an in-memory network, for tests
// and simulations. It authenticates nothing; see transport.MemoryNetwork.
func MemoryTransport(n *transport.MemoryNetwork) TransportFunc {
	return func(cfg transport.Config) (transport.Transport, error) {
		return n.NewTransport(cfg)
	}
}

// Config configures a ConnectionManager. Start from DefaultConfig; New
// rejects a Config with a field out of range and names the field.
type Config struct {
	// Identity is the node's key pair. Nil means a fresh ephemeral identity,
	// which suits tests; a real node loads a persistent one with
	// peer.LoadOrCreateIdentity so that its ID survives restarts.
	Identity *peer.Identity

	// Network names the chain or mesh. It is bound into every handshake:
	// nodes of different networks refuse each other before any stream
	// opens. Default "peerlink"; set it to your chain ID.
	Network string

	// ListenAddrs are the addresses New listens on, e.g. "127.0.0.1:4001"
	// or "0.0.0.0:0". None means a node that only dials until Listen is
	// called.
	ListenAddrs []string

	// Transport builds the transport. Nil means TCP (TLS 1.3).
	Transport TransportFunc

	// Gater, if set, may refuse dials, accepted sockets and secured links;
	// its error reaches the local caller, or is sent to the refused dialer.
	Gater transport.Gater

	// HandshakeTimeout bounds a link's security handshake and admission,
	// so a silent client cannot hold a slot. Zero means 10 s.
	HandshakeTimeout time.Duration

	// MaxPendingHandshakes bounds inbound handshakes in flight per
	// listener (64), MaxPendingPerIP (8) and MaxPendingPerSubnet (16, per
	// IPv4 /24 or IPv6 /64) those from one source. A socket that sends no
	// byte within FirstByteTimeout (2 s) is closed; a new socket that finds
	// a cap reached evicts the oldest silent socket in its scope (or one
	// slower than FirstByteTimeout), so silent and slow clients, however
	// many, cannot keep an honest peer out; only when there is none is the
	// new one refused, and its dialer gets transport.ErrListenerBusy,
	// which its circuit breaker does not count. Negative per-source caps
	// set none. See transport.Config.
	MaxPendingHandshakes int
	MaxPendingPerIP      int
	MaxPendingPerSubnet  int
	FirstByteTimeout     time.Duration

	// MaxInboundPerIP bounds the inbound links from one remote IP (IPv6:
	// one /64): 8, as libp2p allows per IPv4 address. A dialer past it is
	// refused before any TLS work with transport.ErrAddrConnLimit. Loopback
	// counts like any address. Negative means unlimited. LimitExempt lists
	// addresses exempt from the per-IP and per-subnet caps (a node's own
	// sentries behind one NAT, say).
	MaxInboundPerIP int
	LimitExempt     []netip.Prefix

	// DialTimeout bounds one Connect attempt over all of the peer's
	// addresses. Zero means 15 s.
	DialTimeout time.Duration

	// DialAddrDelay is how long a dial waits for one address before it
	// also tries the next (happy eyeballs, RFC 8305): 250 ms. An address
	// that fails sooner hands over at once. The first link to complete
	// wins; the other attempts are called off.
	DialAddrDelay time.Duration

	// DialAddrTimeout bounds the attempt on one address (10 s), within
	// DialTimeout, so that a black-holed address cannot take the whole
	// dial.
	DialAddrTimeout time.Duration

	// AddrTTL is how long an address given to AddPeer or Connect, or
	// learnt from a successful dial, stays in the address book (1 h;
	// refreshed by every successful dial). Persistent peers' addresses
	// never expire.
	AddrTTL time.Duration

	// RecordRetention is how long the record of a peer (its addresses,
	// RTT and error history, breaker) is kept after the peer was last
	// active, when it has no link, no dial, no live address and is not
	// persistent (10 min): long enough that a peer that reconnects finds
	// its history, short enough that identities that come and go leave
	// nothing behind. PruneInterval (1 min) is how often records are
	// pruned.
	RecordRetention time.Duration
	PruneInterval   time.Duration

	// Clock is the time source for the manager's timers and timestamps
	// (reconnect waits, dial staggering, retention, event times); nil
	// means the real clock. Rand is the source of every random choice it
	// makes (reconnect jitter, backoff jitter); nil means a randomly
	// seeded one. A simulation that supplies both, with a fixed seed,
	// repeats itself. Socket deadlines, handshake timeouts and the
	// circuit breakers' timers run on the real clock.
	Clock clock.Clock
	Rand  rand.Source

	// MaxConnections caps open links, inbound and outbound together.
	// 0 means unlimited. Default 400. New caps it (and
	// SetConnectionLimits, which changes it at run time) to what the
	// process can hold, logging why: its open-file limit, less room for
	// listeners, handshakes and files, and its memory budget at
	// LinkMemory a link (see ConnectionLimits).
	MaxConnections int

	// MaxInboundConnections caps links the remote dialed, so that inbound
	// floods cannot take the slots outbound dials need. 0 means unlimited.
	// Default 300.
	MaxInboundConnections int

	// MaxStreamsPerPeer caps the streams open on one link, both directions
	// together. OpenStream past it fails with ErrStreamLimit; inbound
	// streams past it are reset. 0 means unlimited. Default 256.
	MaxStreamsPerPeer int

	// MaxStreams caps the streams open across all peers: 0 means
	// unlimited; default 8192. It is split in two budgets that do not
	// touch each other, so that remotes cannot take what the node needs
	// for its own streams: MaxInboundStreams for streams remotes open
	// (half of MaxStreams if 0), counted once their header has arrived,
	// of which one peer may hold at most a quarter; and
	// MaxOutboundStreams for the node's own (the other half if 0), which
	// keeps ReservedStreams' share for high and critical streams.
	// Inbound streams past their budget are reset; OpenStream waits for a
	// slot (or fails, FailFastStreams).
	MaxStreams         int
	MaxInboundStreams  int
	MaxOutboundStreams int

	// ReservedStreams is the share of each stream limit (per peer and
	// global) that only high and critical streams may take, so bulk
	// traffic cannot take the slots consensus traffic needs: 0 means 10%
	// (rounded up), -1 none, another value a count (per peer; the global
	// pool keeps the same fraction).
	ReservedStreams int

	// FailFastStreams makes OpenStream fail at once with ErrStreamLimit
	// at a stream limit. By default it waits for a slot, bounded by its
	// context, and waiters are served highest priority first.
	FailFastStreams bool

	// WriteChunkSize is the piece of a Write that takes one turn of the
	// link's write scheduler (16 KiB). Turns go by priority with weights
	// PriorityWeights (low 1, normal 2, high 4, critical 8): a critical
	// message waits only for the chunks already in flight
	// (MaxInFlightChunks, 2), whatever bulk traffic is queued.
	WriteChunkSize    int
	MaxInFlightChunks int
	PriorityWeights   [mux.NumPriorities]uint32

	// MaxQueuedBytes and MaxQueuedWrites bound the writes waiting on one
	// link (4 MiB, 1024). Past them a Write waits for room, bounded by its
	// deadline or context, or with FailFastWrites fails at once with
	// mux.ErrBackpressure. Low and normal writes keep out of the last
	// quarter, which is left to high and critical ones.
	MaxQueuedBytes  int
	MaxQueuedWrites int
	FailFastWrites  bool

	// LinkWriteTimeout bounds every write to a link's socket (10 s). A
	// link whose socket does not drain for that long is closed as failed
	// (mux.ErrWriteTimeout) and every writer waiting on it gets the error
	// at once. A Write's own deadline or context bounds the caller sooner
	// without closing the link: the frames it has begun finish within
	// LinkWriteTimeout on their own.
	LinkWriteTimeout time.Duration

	// TargetBandwidth (bytes/s, 12.5 MB/s = 100 Mbit/s), MaxStreamWindow
	// (16 MiB) and PeerMemoryBudget (135 MiB) size each link's stream
	// window for long links: twice the bandwidth-delay product of the RTT the
	// handshake measured, clamped to [256 KiB, MaxStreamWindow]. One
	// stream can then use TargetBandwidth across the link instead of 256
	// KiB ÷ RTT (2.5 MiB/s at 100 ms). A window is also what a peer can
	// make this node buffer on a stream nobody reads, so the peer's stream
	// limit is lowered until its streams fit PeerMemoryBudget (135 MiB),
	// counted in the bytes a stream's receive buffer can really take,
	// which is twice its window (see mux.StreamMemory: 256 streams at the
	// 256 KiB minimum): a long link gets fewer, faster streams.
	// NodeMemoryBudget (1 GiB) bounds the same bytes over all links; a
	// stream that does not fit it is refused (reset if inbound,
	// mux.ErrMemoryBudget from OpenStream). TargetBandwidth < 0 keeps the
	// 256 KiB minimum; a budget < 0 sets none.
	TargetBandwidth  int64
	MaxStreamWindow  uint32
	PeerMemoryBudget int64
	NodeMemoryBudget int64

	// NotSentLowat is TCP_NOTSENT_LOWAT on Linux TCP links (32 KiB): the
	// kernel then holds at most that much unsent data, so the order the
	// write scheduler chose is the order that reaches the wire instead of
	// megabytes of bulk data queued in the kernel ahead of a vote.
	// Negative leaves the kernel's default (unbounded).
	NotSentLowat int

	// StreamHeaderTimeout bounds how long an inbound stream may take to
	// name its protocol. Zero means 10 s.
	StreamHeaderTimeout time.Duration

	// Health configures the link health monitor. Every Interval (10 s) it
	// pings each link on which nothing has arrived for IdleThreshold (the
	// Interval), with Timeout (5 s), at most MaxInFlight (16) at once; a
	// link that fails FailureThreshold (3) checks in a row is closed
	// (EventDisconnected, ReasonUnhealthy) and, for a persistent peer,
	// redialed. A link that goes silent with its socket still open is
	// found within Health.DetectionBound(): 55 s by default. Zero fields
	// take health.DefaultConfig. The monitor replaces yamux's keepalive.
	// Balancer is SelectBest's strategy. Nil means P2C over peak-EWMA
	// latency × (load + 1) ÷ score (Finagle's, with errors counted
	// through the score), seeded from Rand so that a simulation repeats
	// itself. See package balancer for the others.
	Balancer balancer.Strategy

	// History sets how fast each peer record forgets: RTTHalfLife (10 s)
	// for the round-trip average and its peak, ErrorHalfLife (10 min) for
	// the decayed error and success counts the score reads.
	History peerstore.HistoryConfig

	// Score weighs the parts of each peer's quality score (latency 0.35,
	// errors 0.35, health 0.1, stability 0.1, application 0.1; reference
	// RTT 100 ms; the health part reaches 0 at Health.FailureThreshold
	// failed checks unless Score.HealthFailures is set): see package score
	// and QualityScore.
	Score score.Config

	Health health.Config

	// DisableHealthMonitor turns the monitor off. yamux's keepalive then
	// pings every Health.Interval instead, closing a link whose ping
	// cannot be sent; it does not notice a link that swallows pings.
	DisableHealthMonitor bool

	// Breaker configures the per-peer circuit breakers every dial passes
	// through: after FailureThreshold (5) failed dials in a row a peer's
	// circuit opens and Connect fails at once with ErrCircuitOpen; after
	// OpenTimeout (30 s) one trial dial is let through. Zero fields take
	// breaker.DefaultSettings. IsExcluded, if set, adds to the errors the
	// manager already excludes (its own refusals, gater refusals, closing).
	// Its Clock, if nil, is the manager's Clock.
	Breaker breaker.Settings

	// Backoff paces RetryConnect and the reconnects to persistent peers.
	Backoff Backoff

	// PersistentPeers are kept connected: New dials them in the
	// background, and whenever a link to one drops for any reason but a
	// local Disconnect, the manager reconnects with Backoff, forever.
	PersistentPeers []peer.AddrInfo

	// Warming configures connection warming: the peers kept warm, and
	// preemptive scaling. Off by default; see WarmingConfig.
	Warming WarmingConfig
	// Trim sets the watermarks the node trims its links to, by quality
	// score and tags: past HighWater (half of MaxConnections: 200) it
	// closes links down to LowWater (160), never a protected or
	// persistent peer nor a link younger than GracePeriod (1 min), at
	// most once per SilencePeriod (10 s). See TrimConfig.
	Trim TrimConfig

	// Idle closes links that carry no stream for Idle.Timeout (5 min),
	// checked every Idle.CleanupInterval (30 s). See IdleConfig.
	Idle IdleConfig

	// Logger receives structured logs (fields peer, addr, direction).
	// Nothing is logged per message above debug. The zero Logger discards
	// everything, as does DefaultConfig's zerolog.Nop().
	Logger zerolog.Logger
}

// Backoff is an exponential backoff with jitter (github.com/cenkalti/backoff/v4).
// Zero durations and multiplier take the defaults shown.
type Backoff struct {
	// InitialInterval is the first wait (1 s). It is also the window over
	// which the first reconnect attempts after a drop are spread at
	// random, so that many peers dropping at once do not redial at once.
	InitialInterval time.Duration
	// Multiplier grows the wait after each failure (2).
	Multiplier float64
	// RandomizationFactor jitters each wait by ± this fraction. 0 means
	// no jitter (DefaultConfig sets 0.5).
	RandomizationFactor float64
	// MaxInterval caps the wait (60 s); reconnect attempts settle there.
	MaxInterval time.Duration
	// MaxElapsedTime bounds RetryConnect (5 min). Reconnects to persistent
	// peers ignore it: they never give up on their own.
	MaxElapsedTime time.Duration
}

// DefaultConfig returns the documented defaults: network "peerlink", no
// listen addresses, TCP with TLS 1.3, 10 s handshakes (64 in flight per
// listener), 15 s dials, 400 connections of which at most 300 inbound, 256
// streams per peer, 10 s stream header timeout, the breaker, backoff and
// health defaults, warming off (see WarmingConfig), and no logging.
func DefaultConfig() Config {
	return Config{
		Network:               DefaultNetwork,
		HandshakeTimeout:      DefaultHandshakeTimeout,
		MaxPendingHandshakes:  DefaultMaxPendingHandshakes,
		MaxPendingPerIP:       DefaultMaxPendingPerIP,
		MaxPendingPerSubnet:   DefaultMaxPendingPerSubnet,
		FirstByteTimeout:      DefaultFirstByteTimeout,
		MaxInboundPerIP:       DefaultMaxInboundPerIP,
		DialTimeout:           DefaultDialTimeout,
		DialAddrDelay:         DefaultDialAddrDelay,
		DialAddrTimeout:       DefaultDialAddrTimeout,
		AddrTTL:               DefaultAddrTTL,
		RecordRetention:       DefaultRecordRetention,
		PruneInterval:         DefaultPruneInterval,
		MaxConnections:        DefaultMaxConnections,
		MaxInboundConnections: DefaultMaxInboundConnections,
		MaxStreamsPerPeer:     DefaultMaxStreamsPerPeer,
		MaxStreams:            DefaultMaxStreams,
		TargetBandwidth:       DefaultTargetBandwidth,
		MaxStreamWindow:       DefaultMaxStreamWindow,
		PeerMemoryBudget:      DefaultPeerMemoryBudget,
		NodeMemoryBudget:      DefaultNodeMemoryBudget,
		StreamHeaderTimeout:   DefaultStreamHeaderTimeout,
		Health:                health.DefaultConfig(),
		Breaker:               breaker.DefaultSettings(),
		Backoff: Backoff{
			InitialInterval:     DefaultBackoffInitialInterval,
			Multiplier:          DefaultBackoffMultiplier,
			RandomizationFactor: DefaultBackoffRandomizationFactor,
			MaxInterval:         DefaultBackoffMaxInterval,
			MaxElapsedTime:      DefaultBackoffMaxElapsedTime,
		},
		Warming: WarmingConfig{
			Interval:       DefaultWarmInterval,
			ExploreShare:   DefaultWarmExploreShare,
			ScaleThreshold: DefaultWarmScaleThreshold,
			MaxConcurrent:  DefaultWarmMaxConcurrent,
		},
		Logger: zerolog.Nop(),
	}
}

// withDefaults validates cfg and fills in the zero durations. The error
// names the first field that is wrong.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", cfg.HandshakeTimeout},
		{"DialTimeout", cfg.DialTimeout},
		{"StreamHeaderTimeout", cfg.StreamHeaderTimeout},
		{"DialAddrDelay", cfg.DialAddrDelay},
		{"FirstByteTimeout", cfg.FirstByteTimeout},
		{"LinkWriteTimeout", cfg.LinkWriteTimeout},
		{"DialAddrTimeout", cfg.DialAddrTimeout},
		{"AddrTTL", cfg.AddrTTL},
		{"RecordRetention", cfg.RecordRetention},
		{"PruneInterval", cfg.PruneInterval},
	}
	for _, d := range durations {
		if d.v < 0 {
			return cfg, bad(d.name, "is %v; want a positive duration, or 0 for the default", d.v)
		}
	}
	counts := []struct {
		name string
		v    int
	}{
		{"MaxPendingHandshakes", cfg.MaxPendingHandshakes},
		{"MaxConnections", cfg.MaxConnections},
		{"MaxInboundConnections", cfg.MaxInboundConnections},
		{"MaxStreamsPerPeer", cfg.MaxStreamsPerPeer},
		{"MaxStreams", cfg.MaxStreams},
		{"MaxInboundStreams", cfg.MaxInboundStreams},
		{"MaxOutboundStreams", cfg.MaxOutboundStreams},
		{"MaxQueuedBytes", cfg.MaxQueuedBytes},
		{"MaxQueuedWrites", cfg.MaxQueuedWrites},
	}
	for _, c := range counts {
		if c.v < 0 {
			return cfg, bad(c.name, "is %d; want 0 (unlimited or default) or more", c.v)
		}
	}
	if err := cfg.Breaker.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: Breaker: %w", ErrInvalidConfig, err)
	}
	b := &cfg.Backoff
	switch {
	case b.InitialInterval < 0:
		return cfg, bad("Backoff.InitialInterval", "is %v; want a positive duration, or 0 for the default", b.InitialInterval)
	case b.MaxInterval < 0:
		return cfg, bad("Backoff.MaxInterval", "is %v; want a positive duration, or 0 for the default", b.MaxInterval)
	case b.MaxElapsedTime < 0:
		return cfg, bad("Backoff.MaxElapsedTime", "is %v; want a positive duration, or 0 for the default", b.MaxElapsedTime)
	case b.Multiplier != 0 && b.Multiplier < 1:
		return cfg, bad("Backoff.Multiplier", "is %v; want 1 or more (or 0 for the default)", b.Multiplier)
	case b.RandomizationFactor < 0 || b.RandomizationFactor > 1:
		return cfg, bad("Backoff.RandomizationFactor", "is %v; want 0 to 1", b.RandomizationFactor)
	}
	if b.InitialInterval == 0 {
		b.InitialInterval = DefaultBackoffInitialInterval
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	if b.MaxInterval == 0 {
		b.MaxInterval = max(DefaultBackoffMaxInterval, b.InitialInterval)
	}
	if b.MaxElapsedTime == 0 {
		b.MaxElapsedTime = DefaultBackoffMaxElapsedTime
	}
	if b.MaxInterval < b.InitialInterval {
		return cfg, bad("Backoff.MaxInterval", "is %v, less than InitialInterval (%v)", b.MaxInterval, b.InitialInterval)
	}
	for i, p := range cfg.PersistentPeers {
		if err := p.Validate(); err != nil {
			return cfg, bad(fmt.Sprintf("PersistentPeers[%d]", i), "is invalid: %v", err)
		}
		if len(p.Addrs) == 0 {
			return cfg, bad(fmt.Sprintf("PersistentPeers[%d]", i), "has no address")
		}
	}
	if _, err := cfg.connectionLimits().resolve(); err != nil {
		return cfg, err
	}
	cfg.Idle = cfg.Idle.withDefaults()
	for i, a := range cfg.ListenAddrs {
		if a == "" {
			return cfg, bad(fmt.Sprintf("ListenAddrs[%d]", i), "is empty")
		}
	}
	if cfg.MaxStreamWindow == 0 {
		cfg.MaxStreamWindow = DefaultMaxStreamWindow
	}
	if err := cfg.muxConfig(zerolog.Nop()).Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.StreamHeaderTimeout == 0 {
		cfg.StreamHeaderTimeout = DefaultStreamHeaderTimeout
	}
	if cfg.DialAddrDelay == 0 {
		cfg.DialAddrDelay = DefaultDialAddrDelay
	}
	if cfg.DialAddrTimeout == 0 {
		cfg.DialAddrTimeout = min(DefaultDialAddrTimeout, cfg.DialTimeout)
	}
	if cfg.AddrTTL == 0 {
		cfg.AddrTTL = DefaultAddrTTL
	}
	if cfg.RecordRetention == 0 {
		cfg.RecordRetention = DefaultRecordRetention
	}
	if cfg.PruneInterval == 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.History.RTTHalfLife < 0 || cfg.History.ErrorHalfLife < 0 {
		return cfg, bad("History", "half-lives %v, %v: want positive durations, or 0 for the defaults", cfg.History.RTTHalfLife, cfg.History.ErrorHalfLife)
	}
	if err := cfg.Score.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: Score: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Health.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: Health: %w", ErrInvalidConfig, err)
	}
	if cfg.Health.Interval == 0 {
		cfg.Health.Interval = health.DefaultInterval
	}
	if cfg.Score.HealthFailures == 0 { // the health part falls to 0 when the monitor closes the link
		cfg.Score.HealthFailures = cfg.Health.FailureThreshold
		if cfg.Score.HealthFailures == 0 {
			cfg.Score.HealthFailures = health.DefaultFailureThreshold
		}
	}
	cfg.Score = cfg.Score.WithDefaults()
	if err := cfg.Warming.setDefaults(&cfg); err != nil {
		return cfg, err
	}
	if cfg.Transport == nil {
		cfg.Transport = TCP
	}
	return cfg, nil
}

func (cfg Config) muxConfig(log zerolog.Logger) mux.Config {
	mc := mux.DefaultConfig()
	mc.MaxStreams = cfg.MaxStreamsPerPeer
	mc.ReservedStreams = cfg.ReservedStreams
	mc.FailFastStreams = cfg.FailFastStreams
	mc.ChunkSize = cfg.WriteChunkSize
	mc.MaxInFlightChunks = cfg.MaxInFlightChunks
	if cfg.PriorityWeights != ([mux.NumPriorities]uint32{}) {
		mc.PriorityWeights = cfg.PriorityWeights
	}
	mc.MaxQueuedBytes = cfg.MaxQueuedBytes
	mc.MaxQueuedWrites = cfg.MaxQueuedWrites
	mc.FailFast = cfg.FailFastWrites
	mc.WriteTimeout = cfg.LinkWriteTimeout
	mc.HeaderTimeout = cfg.StreamHeaderTimeout
	// One prober per link: the health monitor, or else yamux's keepalive.
	mc.EnableKeepAlive = cfg.DisableHealthMonitor
	mc.KeepAliveInterval = cfg.Health.Interval
	mc.Logger = log
	return mc
}

// nodeLimits returns the node-wide stream and memory budgets, or nil if
// there are none.
func (cfg Config) nodeLimits() *mux.NodeLimits {
	in, out := cfg.MaxInboundStreams, cfg.MaxOutboundStreams
	if cfg.MaxStreams > 0 {
		if in == 0 {
			in = max(cfg.MaxStreams/2, 1)
		}
		if out == 0 {
			out = max(cfg.MaxStreams-in, 1)
		}
	}
	mem := max(cfg.NodeMemoryBudget, 0)
	if in == 0 && out == 0 && mem == 0 {
		return nil
	}
	reserved := cfg.ReservedStreams
	if reserved > 0 && cfg.MaxStreamsPerPeer > 0 { // the same fraction as per peer
		reserved = (out*reserved + cfg.MaxStreamsPerPeer - 1) / cfg.MaxStreamsPerPeer
	}
	return mux.NewNodeLimits(in, out, mux.ReservedSlots(out, reserved), mem)
}
