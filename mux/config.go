package mux

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

// Config tunes a Session. The zero value of each field selects its
// default, except EnableKeepAlive, which DefaultConfig turns on.
type Config struct {
	// MaxStreams bounds the streams open at once on the session, both
	// directions together; 0 means unlimited. OpenStream at the limit
	// waits for a slot (see FailFastStreams); an inbound stream past it is
	// reset with code 2 before any goroutine is started for it.
	MaxStreams int

	// ReservedStreams is the share of MaxStreams that only high and
	// critical streams may take: low and normal streams open only while
	// fewer than MaxStreams-ReservedStreams are open, so bulk traffic
	// cannot take the slots consensus traffic needs. 0 means 10% of
	// MaxStreams, rounded up (26 of 256; 1 of 2); -1 means none; any other
	// value is the count, at most MaxStreams.
	//
	// Inbound streams are checked against the whole MaxStreams: the slot
	// is taken at the stream's SYN, before yamux or any goroutine sees the
	// stream, and its priority is in the stream header, which comes
	// later. (Node-wide, inbound streams have a pool of their own, see
	// NodeLimits, and never touch the outbound pool's reserved share.)
	ReservedStreams int

	// FailFastStreams makes OpenStream fail at once with ErrStreamLimit
	// when no slot is free (in this session or in Node). By
	// default it waits, bounded by its context, and waiters are served
	// highest priority first, in arrival order within a priority.
	FailFastStreams bool

	// Node, if set, holds the budgets the node's sessions share (see
	// NodeLimits): inbound and outbound stream slots apart, and memory for
	// stream buffers. An outbound stream takes a slot of Node.Outbound as
	// it takes its session slot (OpenStream waits for it the same way);
	// an inbound stream takes a slot of Node.Inbound once its header has
	// arrived, and is reset with code 2 if none is free or its session
	// already holds Node.PeerInbound. Every stream is charged
	// StreamMemory(StreamWindow) of the memory budget while it holds its
	// session slot; a stream that does not fit is refused (code 2 for an
	// inbound one, ErrMemoryBudget for OpenStream).
	Node *NodeLimits
	// Totals, if set, sums this session's figures with those of every
	// other session sharing it (streams by direction and priority, write
	// queues, bytes, streams opened, refusals), for a node that reads
	// them in O(1) however many links it has.
	Totals *Totals
	// MemoryBudget bounds, in bytes, what the remote can make this session
	// hold in stream receive buffers: MaxStreams is lowered (to at least
	// 1) until MaxStreams × StreamMemory(StreamWindow) fits. 0 means no
	// budget.
	MemoryBudget int64

	// ChunkSize is the largest piece of a Write that goes out in one turn
	// of the session's write scheduler, counted on the wire: a chunk is
	// one yamux data frame, its 12-byte header included. 0 means 16 KiB,
	// one TLS record, so that each chunk is one record and one write to
	// the link. At most MaxInFlightChunks chunks are ever committed to the
	// link ahead of a newly arrived critical chunk; smaller chunks lower
	// that head-of-line delay and raise the per-byte cost. 1 KiB..16 MiB.
	ChunkSize int

	// MaxInFlightChunks is how many turns the scheduler grants at once:
	// the chunks being written to the link or committed to go next. A
	// newly arrived critical chunk waits behind at most this many. 0
	// means 2, the trade between latency and throughput: with 1 a
	// critical chunk waits behind at most the chunk being written (the
	// tightest head-of-line bound), but between the chunks of different
	// streams the link idles while the next writer's goroutine is woken;
	// with 2 the next chunk is already waiting for the link when the
	// current one ends, so the link stays busy, at the price of one more
	// chunk ahead of a critical one. A writer that finds nobody waiting
	// takes all the free turns and writes its chunks in one write to the
	// link, so one stream alone also keeps the link busy. 1..64.
	MaxInFlightChunks int

	// PriorityWeights are the scheduler's weights, indexed by Priority
	// (low, normal, high, critical). The zero value means 1, 2, 4, 8.
	// Turns go by stride scheduling: each priority class advances by
	// bytes/weight for every chunk it sends, and the class that has
	// advanced least goes next (ties to the higher priority). When all
	// four classes are saturated they get 1/15, 2/15, 4/15 and 8/15 of
	// the link (with the defaults); an idle class's share goes to the
	// others in proportion; none starves. A class that was idle starts
	// again level with the busy ones: it banks no credit while idle, and a
	// critical chunk arriving at a link busy with bulk traffic goes next
	// after the chunks already in flight. (A class gets its share only if
	// it has enough writers to use it: one stream's chunks go one after
	// another, so against others it can have at most one of the
	// MaxInFlightChunks turns at a time.) All must be >= 1 if any is set.
	PriorityWeights [NumPriorities]uint32

	// MaxQueuedBytes and MaxQueuedWrites bound the session's write queue,
	// which stops writers piling up behind a slow link. 0 means 4 MiB and
	// 1024.
	//
	// The queue holds the Writes in progress: admitted and not yet
	// returned (waiting for a turn or for the remote's window, or
	// sending). A Write enters it once it holds its stream's write lock,
	// so concurrent Writes to one stream take one place between them. A
	// Write counts one against MaxQueuedWrites, and against
	// MaxQueuedBytes only the bytes its stream's send window lets it send
	// now: the least of its unsent bytes, its stream's window (plus the
	// turns it holds, whose bytes are on their way to the link) and
	// MaxQueuedBytes. The charge follows the window: it shrinks as chunks
	// go, and grows when the remote returns window. So a Write whose
	// remote has stopped reading its stream counts (nearly) no bytes, and
	// a stalled stream delays no other stream's Writes; only what the
	// link itself has yet to take fills the queue.
	//
	// A Write is admitted while the queue is below the bounds, whatever
	// its own charge, so the bytes can pass MaxQueuedBytes by the charges
	// of the Writes admitted (including the growth of their windows). Low
	// and normal Writes are admitted only while the queue is below three
	// quarters of each bound: the last quarter is kept for high and
	// critical ones. At the bounds a Write waits for room (bounded by its
	// deadline or context; waiters are admitted highest priority first),
	// or with FailFast fails at once with ErrBackpressure. The scheduler
	// never copies a Write's buffer, so the bytes are the callers'.
	MaxQueuedBytes  int
	MaxQueuedWrites int

	// FailFast makes a Write that finds the queue full fail at once with
	// an error wrapping ErrBackpressure, having written nothing, instead
	// of waiting for room.
	FailFast bool

	// HeaderTimeout is how long the accepting side waits for a stream's
	// header before resetting the stream with code 3. 0 means 10s.
	HeaderTimeout time.Duration

	// AcceptBacklog is yamux's AcceptBacklog: inbound streams not yet
	// taken by the accept loop, and outbound opens not yet acknowledged.
	// 0 means 256.
	AcceptBacklog int

	// EnableKeepAlive makes yamux ping every KeepAliveInterval; a ping
	// unanswered within ConnectionWriteTimeout ends the session with
	// ErrKeepAliveTimeout.
	EnableKeepAlive bool
	// KeepAliveInterval: 0 means 30s.
	KeepAliveInterval time.Duration

	// ConnectionWriteTimeout is yamux's bound on queueing a frame for the
	// link (and on a ping's answer). 0 means 10s.
	ConnectionWriteTimeout time.Duration

	// WriteTimeout bounds every write to the link. Each write the session
	// makes to the connection (a stream's data frames, yamux's own frames,
	// resets) gets a write deadline (net.Conn.SetWriteDeadline) of now
	// plus WriteTimeout. A write still blocked then (the remote has
	// stopped draining the link) leaves the link unusable: part of a
	// frame may have gone, and crypto/tls fails every write after a
	// failed one. The session therefore ends with an error wrapping
	// ErrWriteTimeout, and every Write waiting on it (for its stream's
	// lock, the link, a turn, window or queue room) fails at once. 0
	// means ConnectionWriteTimeout (10s by default).
	//
	// A stream's own deadline (Stream.SetWriteDeadline, WriteContext's
	// context) bounds how long its Write waits, the link included, but is
	// never put on the link: cutting a link write short would end the
	// session, and on a busy but healthy link a late Write would then cost
	// every stream of the link. A Write whose deadline comes before its
	// link writes' own (now + WriteTimeout) therefore hands its frames,
	// copied, to a goroutine that writes them; if the deadline passes
	// first, the Write returns a timeout with those frames counted as
	// written, and they go on without it, bounded by WriteTimeout (and
	// holding their turns until they are written).
	//
	// To save a system call per write, the deadline is set again only once
	// it has moved by more than WriteTimeout/16, so a write to the link
	// may fail after 15/16 of WriteTimeout.
	WriteTimeout time.Duration

	// StreamCloseTimeout is how long yamux keeps a stream that this side
	// has closed while it waits for the remote's close. A stream this side
	// resets or refuses (codes 1..4) is closed locally right after its RST
	// and the remote, having dropped the stream, never answers, so such a
	// stream's state (and up to StreamWindow of data that was in flight)
	// is held until this fires; yamux's default of 5 minutes would let a
	// stream flood pile it up. 0 means 30s.
	StreamCloseTimeout time.Duration

	// StreamOpenTimeout is yamux's bound on the remote acknowledging a
	// stream we opened; when it passes, yamux closes the whole session.
	// Each pending open holds a goroutine until acknowledged. 0 means 75s
	// (yamux's default); negative disables it.
	StreamOpenTimeout time.Duration

	// StreamWindow is yamux's MaxStreamWindowSize: the receive window of
	// each stream, which bounds its throughput to StreamWindow/RTT. 0
	// means 256 KiB, the minimum.
	StreamWindow uint32

	// Logger receives yamux's log lines and the session's own, with
	// component=yamux|mux and peer=<remote short ID>. The zero value
	// logs nothing.
	Logger zerolog.Logger

	// OnHandlerPanic, if set, is called after a Handler panicked and the
	// session recovered it (see Handler), in the handler's goroutine, with
	// the remote's ID, the stream's protocol and the value passed to
	// panic. It must not panic itself.
	OnHandlerPanic func(remote peer.ID, protocol string, value any)
}

// Defaults applied to zero Config fields.
const (
	DefaultHeaderTimeout          = 10 * time.Second
	DefaultAcceptBacklog          = 256
	DefaultKeepAliveInterval      = 30 * time.Second
	DefaultConnectionWriteTimeout = 10 * time.Second
	DefaultStreamCloseTimeout     = 30 * time.Second
	DefaultStreamOpenTimeout      = 75 * time.Second
	DefaultStreamWindow           = 256 << 10
	DefaultChunkSize              = 16 << 10
	DefaultMaxInFlightChunks      = 2
	DefaultMaxQueuedBytes         = 4 << 20
	DefaultMaxQueuedWrites        = 1024
)

// defaultPriorityWeights are the scheduler weights used when
// Config.PriorityWeights is zero: low 1, normal 2, high 4, critical 8.
// (A variable, so not exported: callers could change it.)
var defaultPriorityWeights = [NumPriorities]uint32{1, 2, 4, 8}

// Bounds of Config.ChunkSize and Config.MaxInFlightChunks.
const (
	minChunkSize      = 1 << 10
	maxChunkSize      = 16 << 20
	maxInFlightChunks = 64
)

// DefaultConfig returns the defaults, with keepalive on and logging off.
func DefaultConfig() Config {
	return Config{
		HeaderTimeout:          DefaultHeaderTimeout,
		AcceptBacklog:          DefaultAcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      DefaultKeepAliveInterval,
		ConnectionWriteTimeout: DefaultConnectionWriteTimeout,
		StreamCloseTimeout:     DefaultStreamCloseTimeout,
		StreamOpenTimeout:      DefaultStreamOpenTimeout,
		StreamWindow:           DefaultStreamWindow,
		ChunkSize:              DefaultChunkSize,
		MaxInFlightChunks:      DefaultMaxInFlightChunks,
		PriorityWeights:        defaultPriorityWeights,
		MaxQueuedBytes:         DefaultMaxQueuedBytes,
		MaxQueuedWrites:        DefaultMaxQueuedWrites,
		Logger:                 zerolog.Nop(),
	}
}

// Validate reports the first invalid field of c, as NewSession would,
// with an error naming it; zero fields are valid (they select defaults).
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// ReservedSlots returns how many of a limit of max slots a
// Config.ReservedStreams value of reserved keeps for high and critical
// streams: 0 means 10% of max, rounded up; -1 none; another value is the
// count itself.
func ReservedSlots(max, reserved int) int {
	switch reserved {
	case 0:
		return (max + 9) / 10
	case -1:
		return 0
	}
	return reserved
}

// normalize validates c, naming the bad field, and fills in defaults.
func (c Config) normalize() (Config, error) {
	bad := func(field string, v any, want string) (Config, error) {
		return c, fmt.Errorf("mux: invalid Config.%s %v: %s", field, v, want)
	}
	switch {
	case c.MaxStreams < 0:
		return bad("MaxStreams", c.MaxStreams, "must be >= 0 (0 = unlimited)")
	case c.HeaderTimeout < 0:
		return bad("HeaderTimeout", c.HeaderTimeout, "must be >= 0")
	case c.AcceptBacklog < 0:
		return bad("AcceptBacklog", c.AcceptBacklog, "must be >= 0")
	case c.KeepAliveInterval < 0:
		return bad("KeepAliveInterval", c.KeepAliveInterval, "must be >= 0")
	case c.ConnectionWriteTimeout < 0:
		return bad("ConnectionWriteTimeout", c.ConnectionWriteTimeout, "must be >= 0")
	case c.WriteTimeout < 0:
		return bad("WriteTimeout", c.WriteTimeout, "must be >= 0")
	case c.StreamCloseTimeout < 0:
		return bad("StreamCloseTimeout", c.StreamCloseTimeout, "must be >= 0")
	case c.StreamWindow != 0 && c.StreamWindow < DefaultStreamWindow:
		return bad("StreamWindow", c.StreamWindow, fmt.Sprintf("must be 0 or >= %d (yamux's minimum)", DefaultStreamWindow))
	case c.ReservedStreams < -1 || (c.MaxStreams > 0 && c.ReservedStreams > c.MaxStreams):
		return bad("ReservedStreams", c.ReservedStreams, "must be -1 (none), 0 (10% of MaxStreams) or a count up to MaxStreams")
	case c.ChunkSize != 0 && (c.ChunkSize < minChunkSize || c.ChunkSize > maxChunkSize):
		return bad("ChunkSize", c.ChunkSize, fmt.Sprintf("must be 0 or %d..%d", minChunkSize, maxChunkSize))
	case c.MaxInFlightChunks < 0 || c.MaxInFlightChunks > maxInFlightChunks:
		return bad("MaxInFlightChunks", c.MaxInFlightChunks, fmt.Sprintf("must be 0..%d", maxInFlightChunks))
	case c.MaxQueuedBytes < 0:
		return bad("MaxQueuedBytes", c.MaxQueuedBytes, "must be >= 0")
	case c.MaxQueuedWrites < 0:
		return bad("MaxQueuedWrites", c.MaxQueuedWrites, "must be >= 0")
	case c.MemoryBudget < 0:
		return bad("MemoryBudget", c.MemoryBudget, "must be >= 0 (0 = none)")
	}
	if c.PriorityWeights != ([NumPriorities]uint32{}) {
		for _, w := range c.PriorityWeights {
			if w == 0 {
				return bad("PriorityWeights", c.PriorityWeights, "each must be >= 1 (or all 0 for the defaults)")
			}
		}
	} else {
		c.PriorityWeights = defaultPriorityWeights
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.MemoryBudget > 0 {
		fit := int(max(c.MemoryBudget/StreamMemory(c.StreamWindow), 1))
		if c.MaxStreams == 0 || fit < c.MaxStreams {
			c.MaxStreams = fit
			if c.ReservedStreams > c.MaxStreams {
				c.ReservedStreams = 0 // back to 10% of the lowered limit
			}
		}
	}
	c.ReservedStreams = ReservedSlots(c.MaxStreams, c.ReservedStreams)
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxInFlightChunks == 0 {
		c.MaxInFlightChunks = DefaultMaxInFlightChunks
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.MaxQueuedWrites == 0 {
		c.MaxQueuedWrites = DefaultMaxQueuedWrites
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.ConnectionWriteTimeout == 0 {
		c.ConnectionWriteTimeout = DefaultConnectionWriteTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = c.ConnectionWriteTimeout
	}
	if c.StreamCloseTimeout == 0 {
		c.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
	switch {
	case c.StreamOpenTimeout == 0:
		c.StreamOpenTimeout = DefaultStreamOpenTimeout
	case c.StreamOpenTimeout < 0:
		c.StreamOpenTimeout = 0 // yamux: 0 disables
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	return c, nil
}

// yamuxConfig returns the yamux configuration for a normalized c.
func (c Config) yamuxConfig(l yamux.Logger) *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        c.EnableKeepAlive,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.ConnectionWriteTimeout,
		MaxStreamWindowSize:    c.StreamWindow,
		StreamOpenTimeout:      c.StreamOpenTimeout,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		Logger:                 l,
		LogOutput:              nil, // never yamux's default, os.Stderr
	}
}

var _ io.ReadWriteCloser = (*frameConn)(nil)
