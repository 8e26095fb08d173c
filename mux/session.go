package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink/peer"
)

// Handler serves one inbound stream. It runs in its own goroutine and
// owns the stream; when it returns, the session closes the stream (a
// no-op if the handler already closed or reset it).
//
// The session's end, StartClose and Close make the stream's Read and
// Write return, but nothing else the handler may be blocked on: a
// handler that waits for other things should also watch the stream's
// Context, which is cancelled then.
//
// If the handler panics, the session recovers the panic (as net/http
// does a handler's), resets the stream with code ResetHandlerFailed (the
// opener's Read or Write fails with an error wrapping ErrHandlerFailed),
// logs the panic and its stack at error level, counts it in
// SessionStats.HandlerPanics, calls Config.OnHandlerPanic, and goes on
// serving the session's other streams.
type Handler func(s *Stream)

// SessionStats are a session's counters since it started.
type SessionStats struct {
	StreamsOpened    uint64 // outbound streams opened by OpenStream
	StreamsAccepted  uint64 // inbound streams handed to a handler
	OpenLimited      uint64 // OpenStream calls failed for want of a local stream slot or memory (ErrStreamLimit)
	LimitRefusals    uint64 // inbound streams reset for want of a stream slot or memory (code 2)
	BudgetRefusals   uint64 // of LimitRefusals, those for want of memory (NodeLimits)
	UnknownProtocol  uint64 // inbound streams reset for want of a handler (code 1)
	MalformedHeaders uint64 // inbound streams reset for a malformed or late header (code 3)
	HandlerPanics    uint64 // handlers that panicked (their streams reset with code 6)
	JunkBytes        uint64 // data bytes dropped for streams that were reset, refused or closed
	PingsUnanswered  uint64 // the remote's pings dropped because answers were piling up

	// RST frames written and read, indexed by ResetCode. Index 0 counts
	// resets without a peerlink code: yamux's own (accept backlog full,
	// stream close timeout), unknown codes, and the plain RSTs with which
	// a session answers a coded one (so the resetting side frees the
	// stream at once).
	ResetsSent     [NumResetCodes]uint64
	ResetsReceived [NumResetCodes]uint64
}

// Session is one multiplexed link: a yamux session over a frameConn,
// plus the stream header, stream limits and reset codes. All methods are
// safe for concurrent use.
type Session struct {
	cfg           Config
	local, remote peer.ID
	route         func(protocol string) Handler
	fc            *frameConn
	ys            *yamux.Session
	log           zerolog.Logger
	sched         *scheduler
	slots         *SlotPool // this session's stream slots (MaxStreams, ReservedStreams)
	guard         guard     // what the remote may send, frame by frame (guard.go)
	streamMem     int64     // what each stream is charged in NodeLimits' memory budget

	mu        sync.Mutex
	streams   map[uint32]*Stream // open streams, and closed ones kept to learn of a late FIN/RST
	lingering int                // released streams still in streams
	sweepAt   int                // sweep streams when lingering exceeds this
	early     [earlyRingSize]earlyFrame
	earlyNext int
	inbound   int
	outbound  int
	// Mirrors for lock-free readers (Figures): inbound and outbound,
	// stored wherever they change; and the open streams whose priority
	// is known (outbound, or inbound with its header read), by priority,
	// which StreamsByPriority reports.
	pubIn, pubOut atomic.Int32
	prioOpen      [NumPriorities]atomic.Int32
	acks          []ctrlRST // resets to send: acknowledgements and refusals
	ackBusy       bool      // a control goroutine is running (sendControl)
	// Inbound streams admitted at their SYN (slot and memory taken) that
	// the accept loop has not taken yet, with the memory charged.
	synAdmitted map[uint32]int64
	nodeIn      int       // NodeLimits.Inbound slots held by this session's streams
	ping        *pingCall // the yamux ping in flight, shared by PingContext callers

	// The session's goroutines (see Wait). running counts them: the
	// accept loop, handlers (also counted in handlers), the open, ack and
	// ping goroutines, and the one that runs yamux's Close. Once ended is
	// set no goroutine starts but the close goroutine, and idle is closed
	// when running drops to 0.
	closing      bool // StartClose called: start no goroutine, open no stream
	closeStarted bool // the close goroutine has been started
	ended        bool // the accept loop has finished
	running      int
	handlers     int
	idle         chan struct{}

	// ctx is every stream's Context: cancelled by StartClose and when the
	// session ends.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// noOpen is closed once no stream may be opened any more (StartClose,
	// the session's end, or GoAway from either side), and aborts the
	// OpenStream calls waiting for a slot.
	noOpen     chan struct{}
	noOpenOnce sync.Once

	goingAway    atomic.Bool // GoAway called
	remoteGoAway atomic.Bool // the remote's GoAway seen by the frame tracker

	localClose atomic.Bool
	closed     atomic.Bool           // set as done is closed, for lock-free readers
	teardown   atomic.Bool           // closing or closed: yamux errors are noise
	linkErr    atomic.Pointer[error] // a failed write to the link, which ended the session
	done       chan struct{}
	err        error // why the session ended; set before done is closed
	streamErr  error // what stream operations return once it ended

	opened, accepted, openLimited, limitRefused, unknownProto, malformed, panics atomic.Uint64
	budgetRefused, junk                                                          atomic.Uint64
	rstRecv                                                                      [NumResetCodes]atomic.Uint64
}

// earlyFrame is a FIN or RST seen for a stream ID before the stream was
// registered (the remote can reset a stream before OpenStream or the
// accept loop has recorded it). A small ring: IDs are never reused within
// a session, so a stale entry is harmless and is overwritten in time.
type earlyFrame struct {
	id    uint32
	flags uint16
	code  uint32
	used  bool
}

const earlyRingSize = 32

// NewSession starts a session over conn, which it then owns (Close closes
// it; if NewSession fails, conn is left open). client is true on the side
// that dialed the link; local and remote are the two peers' IDs, which
// the transport has established. route maps an inbound stream's protocol
// to its handler, or to nil when the protocol is not served; a nil route
// serves nothing. The accept loop starts at once.
func NewSession(conn net.Conn, local, remote peer.ID, client bool, cfg Config, route func(protocol string) Handler) (*Session, error) {
	if conn == nil {
		return nil, errors.New("mux: NewSession: nil conn")
	}
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if route == nil {
		route = func(string) Handler { return nil }
	}
	s := &Session{
		cfg:         cfg,
		local:       local,
		remote:      remote,
		route:       route,
		sched:       newScheduler(cfg),
		slots:       NewSlotPool(cfg.MaxStreams, cfg.ReservedStreams),
		streams:     make(map[uint32]*Stream),
		synAdmitted: make(map[uint32]int64),
		sweepAt:     minSweep,
		idle:        make(chan struct{}),
		noOpen:      make(chan struct{}),
		done:        make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	short := remote.ShortString()
	s.log = cfg.Logger.With().Str("component", "mux").Str("peer", short).Logger()
	ylog := &yamuxLogger{
		log:      cfg.Logger.With().Str("component", "yamux").Str("peer", short).Logger(),
		teardown: &s.teardown,
	}
	s.fc = newFrameConn(conn, s.onFrame)
	s.fc.totals = cfg.Totals
	s.fc.setWrites(cfg.WriteTimeout, short, s.linkFailed)
	s.fc.tracker.onCredit = s.sched.credit
	s.fc.tracker.onGoAway = s.onGoAway
	s.fc.tracker.admit = s.inspect
	s.guard.init(cfg.StreamWindow)
	s.streamMem = StreamMemory(cfg.StreamWindow)
	s.fc.sent = func(id uint32, flags uint16) {
		s.sched.sent(id, flags)
		s.guard.noteOut(id, flags)
	}
	ycfg := cfg.yamuxConfig(ylog)
	// yamux's recv goroutine may deliver a frame (onFrame, which may start
	// an ack goroutine reading s.ys) before yamux.Client returns: s.mu
	// holds it off until s.ys and the accept loop's count are set.
	s.mu.Lock()
	s.running = 1 // the accept loop
	if client {
		s.ys, err = yamux.Client(s.fc, ycfg)
	} else {
		s.ys, err = yamux.Server(s.fc, ycfg)
	}
	s.mu.Unlock()
	if err != nil {
		s.cancel(err)
		return nil, fmt.Errorf("mux: NewSession: %w", err)
	}
	go s.acceptLoop()
	return s, nil
}

// LocalPeer returns this side's peer ID.
func (s *Session) LocalPeer() peer.ID { return s.local }

// Config returns the session's configuration, defaults filled in (for
// example ReservedStreams as a count, PriorityWeights as the weights in
// use).
func (s *Session) Config() Config { return s.cfg }

// RemotePeer returns the remote's peer ID.
func (s *Session) RemotePeer() peer.ID { return s.remote }

// BytesIn returns the bytes read from the link so far.
func (s *Session) BytesIn() uint64 { return s.fc.in.Load() }

// BytesOut returns the bytes written to the link so far.
func (s *Session) BytesOut() uint64 { return s.fc.out.Load() }

// Done returns a channel closed once the session has ended, for any
// reason; Err then says why. After StartClose it is closed promptly: it
// does not wait for handlers (Wait does).
func (s *Session) Done() <-chan struct{} { return s.done }

// Closed reports whether the session has ended (Done is closed), from
// one atomic load.
func (s *Session) Closed() bool { return s.closed.Load() }

// OpenStreams returns the streams holding a slot, as NumStreams, from
// atomic loads alone (for a caller that reads many sessions, such as a
// load balancer); it may lag a concurrent open or close by an instant.
func (s *Session) OpenStreams() int { return int(s.pubIn.Load() + s.pubOut.Load()) }

// Err returns why the session ended: nil while it is open,
// ErrSessionClosed after a local Close, ErrKeepAliveTimeout when pings
// went unanswered, otherwise an error wrapping the cause: io.EOF when the
// remote closed the link, the link's error when a read or write on it
// failed (net.ErrClosed if it was closed under the session; one wrapping
// ErrWriteTimeout if a write took longer than Config.WriteTimeout),
// yamux's on a protocol error.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// NumStreams returns the number of streams holding a slot, both
// directions (see StreamCounts).
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inbound + s.outbound
}

// StreamCounts returns the number of inbound and outbound streams holding
// a slot. An inbound stream counts from accept until its handler returns
// (or its Reset). An outbound stream counts from OpenStream until its
// Reset, or after its Close until the remote's FIN or RST shows the
// remote has let go of it too (at most StreamCloseTimeout).
func (s *Session) StreamCounts() (inbound, outbound int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inbound, s.outbound
}

// SlotWaiters returns how many OpenStream calls are waiting for one of
// the session's stream slots.
func (s *Session) SlotWaiters() int { return s.slots.Waiting() }

// StreamsByPriority returns the number of open streams by priority
// (index: Priority), both directions, at their current priorities. An
// inbound stream counts once its header has been read; a stream stops
// counting at its Close, even while its slot waits for the remote.
func (s *Session) StreamsByPriority() [NumPriorities]int {
	var n [NumPriorities]int
	for p := range n {
		n[p] = int(s.prioOpen[p].Load())
	}
	return n
}

// QueueStats returns the figures of the session's write queue by
// priority (index: Priority); see QueueStats.
func (s *Session) QueueStats() [NumPriorities]QueueStats { return s.sched.stats() }

// Utilization returns how full the session's write queue is: the bytes
// it holds (QueueStats.QueuedBytes summed) over Config.MaxQueuedBytes. It
// is 0 when the queue is empty and 1 at the bound, which the last Write
// admitted can pass (see Config.MaxQueuedBytes).
func (s *Session) Utilization() float64 { return s.sched.utilization() }

// Stats returns the session's counters.
func (s *Session) Stats() SessionStats {
	st := SessionStats{
		StreamsOpened:    s.opened.Load(),
		StreamsAccepted:  s.accepted.Load(),
		OpenLimited:      s.openLimited.Load(),
		LimitRefusals:    s.limitRefused.Load(),
		BudgetRefusals:   s.budgetRefused.Load(),
		JunkBytes:        s.junk.Load(),
		PingsUnanswered:  uint64(s.pingsDropped()),
		UnknownProtocol:  s.unknownProto.Load(),
		MalformedHeaders: s.malformed.Load(),
		HandlerPanics:    s.panics.Load(),
	}
	for i := range st.ResetsSent {
		st.ResetsSent[i] = s.fc.rstSent[i].Load()
		st.ResetsReceived[i] = s.rstRecv[i].Load()
	}
	return st
}

// Ping sends a yamux ping and returns the round-trip time. It waits at
// most ConnectionWriteTimeout for the answer (after the ping is queued).
// It is PingContext without a context of its own.
func (s *Session) Ping() (time.Duration, error) {
	return s.PingContext(context.Background())
}

// pingCall is one yamux ping, run by its own goroutine, whose result any
// number of PingContext callers wait for.
type pingCall struct {
	done chan struct{} // closed when rtt and err are set
	rtt  time.Duration
	err  error // yamux's
}

// PingContext sends a yamux ping and returns the round-trip time, waiting
// no longer than ctx allows.
//
// When ctx ends first it returns an error wrapping ctx.Err() (and the
// cause, if any); for a deadline the error also satisfies
// errors.Is(err, os.ErrDeadlineExceeded). When the session has ended, or
// ends meanwhile, it returns the error stream operations return, which
// wraps ErrSessionClosed. When the ping gets no answer within
// ConnectionWriteTimeout (yamux's own bound, counted from when the ping
// was sent, which for a caller that joined a ping in flight is before it
// came) it fails with an error wrapping os.ErrDeadlineExceeded, even if
// ctx has time left.
//
// yamux's ping takes no context, so it runs in a goroutine, which
// finishes the ping when a caller gives up (by ConnectionWriteTimeout, or
// at once when the session closes; Wait and Close wait for it).
// Concurrent calls share the ping in flight rather than each starting
// one: a session never has more than one such goroutine, however often
// PingContext is called with short deadlines. A caller that joins a ping already in flight gets
// that ping's round-trip time; its answer arrived after the caller came,
// which is what a liveness check needs. If the joined ping times out, the
// caller pings again within its own ctx: the timeout began before it came.
func (s *Session) PingContext(ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, contextErr("mux: ping", ctx)
	}
	var c *pingCall
	for {
		s.mu.Lock()
		c = s.ping
		joined := c != nil
		if c == nil {
			if !s.goLocked() {
				s.mu.Unlock()
				return 0, s.closedErr()
			}
			c = &pingCall{done: make(chan struct{})}
			s.ping = c
			go s.runPing(c)
		}
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return 0, contextErr("mux: ping", ctx)
		}
		// A ping joined late that gave up on its own time says nothing
		// of this caller's: ask again (a fresh ping has the whole
		// timeout), so that when a probe lands in the instant a ping
		// times out does not decide its outcome.
		if !joined || (c.err != yamux.ErrTimeout && c.err != yamux.ErrConnectionWriteTimeout) {
			break
		}
	}
	switch err := c.err; {
	case err == nil:
		return c.rtt, nil
	case err == yamux.ErrSessionShutdown:
		return 0, s.closedErr()
	case err == yamux.ErrTimeout:
		return 0, fmt.Errorf("mux: ping: no answer within %v: %w", s.cfg.ConnectionWriteTimeout, os.ErrDeadlineExceeded)
	case err == yamux.ErrConnectionWriteTimeout:
		return 0, &multiError{"mux: ping: " + err.Error(), []error{err, os.ErrDeadlineExceeded}}
	default:
		return 0, fmt.Errorf("mux: ping: %w", err)
	}
}

// runPing runs yamux's ping for c. yamux's Ping returns within
// ConnectionWriteTimeout (twice that if the send queue is stuck), or at
// once when the session shuts down.
func (s *Session) runPing(c *pingCall) {
	defer s.exited(false)
	c.rtt, c.err = s.ys.Ping()
	s.mu.Lock()
	s.ping = nil
	s.mu.Unlock()
	close(c.done)
}

// LastRead returns when bytes last arrived on the link: the session's
// start until any have. It costs one atomic load and does no I/O (the
// frame conn stores the time at every read from the link), so a health
// checker can tell an idle link from a busy one for free. The time has a
// monotonic clock reading: compare it with time.Now, not across a wall
// clock change.
func (s *Session) LastRead() time.Time { return s.fc.lastRead() }

// Close closes the session and waits for its goroutines: it is
// StartClose followed by Wait without a deadline. Handlers blocked in a
// stream's Read or Write are released by the close; a handler blocked on
// something else delays Close, unless it watches its stream's Context.
// Close must not be called from a handler, which would wait for itself:
// call StartClose there. Close is idempotent and returns nil.
func (s *Session) Close() error {
	s.StartClose()
	_ = s.Wait(context.Background())
	return nil
}

// StartClose begins closing the session and returns at once, waiting
// neither for handlers nor for the link. From then on OpenStream fails
// with ErrSessionClosed and the session starts no goroutine; the streams'
// Context is cancelled (its cause is ErrSessionClosed); and a goroutine
// of the session closes yamux and the link, which makes blocked stream
// Reads and Writes return and then Done close. Wait waits for all of it.
// StartClose may be called from a handler, any number of times, and
// concurrently with Close.
func (s *Session) StartClose() {
	s.localClose.Store(true)
	s.teardown.Store(true)
	s.mu.Lock()
	s.closing = true
	start := s.claimCloseLocked()
	s.mu.Unlock()
	s.cancel(ErrSessionClosed)
	s.stopOpens()
	if start {
		go s.closeYamux()
	}
}

// closeYamux runs yamux's Close, which closes the link and waits for
// yamux's receive and send goroutines to finish.
func (s *Session) closeYamux() {
	defer s.exited(false)
	_ = s.ys.Close()
	s.fc.waitDetached() // the link is closed: they end at once
}

// Wait waits until the session has ended and every goroutine it started
// has returned: the accept loop, every handler, the goroutines of
// OpenStream, PingContext and reset acknowledgements, and the one that
// closes yamux (after which yamux's own have finished too). It returns
// nil then, or ctx.Err() if ctx ends first. Without StartClose or Close
// it waits for the session to end by itself (the link failing, or the
// remote closing it). Called from a handler of the session, Wait waits
// for that handler too, so it returns only when ctx ends.
func (s *Session) Wait(ctx context.Context) error {
	select {
	case <-s.idle:
		return nil
	default:
	}
	select {
	case <-s.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Handlers returns the number of goroutines serving inbound streams now:
// reading a stream's header or running its handler.
func (s *Session) Handlers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers
}

// goLocked reports whether a goroutine of the session may start, and if
// so counts it; the goroutine calls exited when it returns. None may
// once StartClose was called or the session ended. s.mu must be held.
func (s *Session) goLocked() bool {
	if s.closing || s.ended {
		return false
	}
	s.running++
	return true
}

// exited uncounts a goroutine that is returning; handler says it served
// an inbound stream.
func (s *Session) exited(handler bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if handler {
		s.handlers--
	}
	s.running--
	if s.running == 0 && s.ended {
		close(s.idle)
	}
}

// stopOpens aborts the OpenStream calls waiting for a slot.
func (s *Session) stopOpens() {
	s.noOpenOnce.Do(func() { close(s.noOpen) })
}

// GoAway starts draining the session: it tells the remote, with yamux's
// GoAway frame, to open no more streams, and returns once the frame is on
// the link. From the call on, OpenStream fails at once with an error
// wrapping ErrGoAway, and so do the calls waiting for a slot; a stream
// the remote opens from then on is refused before any handler sees it,
// with a reset of code ResetGoingAway (the remote's Read or Write fails
// with an error wrapping ErrGoAway, and it may open the stream
// elsewhere). Streams already open, in both directions, go on as before,
// as does the session: close it when they are done (Handlers and
// NumStreams tell).
//
// GoAway cannot be undone. Later calls return nil. If the frame cannot be
// written it returns the error (wrapping ErrSessionClosed if the session
// has ended), but the session still refuses the remote's new streams.
func (s *Session) GoAway() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrSessionClosed
	}
	if s.goingAway.Swap(true) {
		return nil
	}
	// Before yamux's own flag (set in ys.GoAway): every SYN yamux refuses
	// for the GoAway is then known to the frame conn, which codes the RST.
	s.fc.goAway.Store(true)
	s.stopOpens()
	switch err := s.ys.GoAway(); {
	case err == nil:
		s.log.Debug().Msg("sent GoAway")
		return nil
	case err == yamux.ErrSessionShutdown:
		return s.closedErr()
	case err == yamux.ErrConnectionWriteTimeout:
		return &multiError{"mux: go away: " + err.Error(), []error{err, os.ErrDeadlineExceeded}}
	default:
		return fmt.Errorf("mux: go away: %w", err)
	}
}

// GoingAway reports whether GoAway was called.
func (s *Session) GoingAway() bool { return s.goingAway.Load() }

// RemoteGoAway reports whether the remote has sent GoAway: it opens no
// more streams, and OpenStream here fails with an error wrapping
// ErrGoAway.
func (s *Session) RemoteGoAway() bool { return s.remoteGoAway.Load() }

// onGoAway is the frame tracker's callback for a GoAway frame, on yamux's
// recv goroutine before yamux handles it. Code 0 is a normal GoAway;
// yamux ends the session on the others (protocol or internal error).
func (s *Session) onGoAway(code uint32) {
	if code != 0 || s.remoteGoAway.Swap(true) {
		return
	}
	s.stopOpens()
	s.log.Debug().Msg("remote sent GoAway")
}

// Errors of OpenStream after a GoAway.
var (
	errGoAwaySent     = fmt.Errorf("%w: GoAway sent", ErrGoAway)
	errGoAwayReceived = fmt.Errorf("%w: remote sent GoAway", ErrGoAway)
)

// noOpenErr returns why no stream may be opened, or nil.
func (s *Session) noOpenErr() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrSessionClosed
	}
	select {
	case <-s.done:
		return s.streamErr
	default:
	}
	switch {
	case s.goingAway.Load():
		return errGoAwaySent
	case s.remoteGoAway.Load():
		return errGoAwayReceived
	}
	return nil
}

// OpenStream opens a stream for protocol at priority prio. It costs no
// round trip: the stream header goes out with the first Write (or alone
// before the first Read, or at Close), and a refusal by the remote shows
// as an error from a later Read or Write (ErrProtocolNotSupported,
// ErrStreamLimit, both wrapping ErrStreamReset).
//
// The stream needs a slot of the session (MaxStreams, of which low and
// normal streams may not take the last ReservedStreams) and, if set, of
// Config.GlobalSlots. When none is free it waits for one, waiters being
// served highest priority first, in arrival order within a priority;
// ctx bounds the wait (the error then wraps both ErrStreamLimit and
// ctx.Err()). With Config.FailFastStreams it fails at once with
// ErrStreamLimit instead. ctx also bounds the wait for yamux to open the
// stream (it blocks while AcceptBacklog opens are unacknowledged).
//
// After StartClose or Close it fails with ErrSessionClosed, once the
// session has ended with an error wrapping ErrSessionClosed, and once
// either side has sent GoAway with one wrapping ErrGoAway; a call
// waiting for a slot then gives up at once.
func (s *Session) OpenStream(ctx context.Context, protocol string, prio Priority) (*Stream, error) {
	if err := ValidateProtocol(protocol); err != nil {
		return nil, err
	}
	if !prio.Valid() {
		return nil, fmt.Errorf("%w: %d (want 0..3)", ErrInvalidPriority, uint8(prio))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.noOpenErr(); err != nil {
		return nil, err
	}
	mem, err := s.takeSlots(ctx, prio)
	if err != nil {
		return nil, err
	}
	if err := s.noOpenErr(); err != nil {
		s.giveSlots(nil, true, mem)
		return nil, err
	}
	s.mu.Lock()
	s.outbound++
	s.publishStreamsLocked()
	s.mu.Unlock()

	ys, err := s.openYamux(ctx)
	if err != nil {
		s.mu.Lock()
		s.outbound--
		s.publishStreamsLocked()
		s.mu.Unlock()
		s.giveSlots(nil, true, mem)
		return nil, s.mapOpenErr(err)
	}
	st := newStream(s, ys, false, prio)
	st.mem = mem
	st.protocol = protocol
	st.hdr = appendStreamHeader(make([]byte, 0, headerFixedLen+len(protocol)), prio, protocol)
	s.mu.Lock()
	st.prioKnown = true
	s.addPriorityLocked(false, prio, 1)
	s.registerLocked(st)
	s.mu.Unlock()
	s.opened.Add(1)
	s.cfg.Totals.streamOpened()
	return st, nil
}

// takeSlots takes a stream slot of the session, then of the node's
// outbound pool and the stream's memory (Config.Node), for an outbound
// stream at prio: at once or failing (FailFastStreams), or waiting in
// priority order until ctx ends or the session does. It returns the
// memory charged.
func (s *Session) takeSlots(ctx context.Context, prio Priority) (int64, error) {
	n := s.cfg.Node
	if s.cfg.FailFastStreams {
		if !s.slots.TryAcquire(prio) {
			s.openLimited.Add(1)
			return 0, fmt.Errorf("%w: %d streams open (MaxStreams %d, %d reserved for high and critical)",
				ErrStreamLimit, s.slots.InUse(), s.cfg.MaxStreams, s.cfg.ReservedStreams)
		}
		if n != nil && !n.Outbound.TryAcquire(prio) {
			s.slots.Release()
			s.openLimited.Add(1)
			return 0, fmt.Errorf("%w: the node's outbound streams are all in use (%d)", ErrStreamLimit, n.Outbound.InUse())
		}
	} else {
		if err := s.slots.acquire(ctx, prio, s.noOpen); err != nil {
			return 0, s.slotWaitErr(ctx, err, "")
		}
		if n != nil {
			if err := n.Outbound.acquire(ctx, prio, s.noOpen); err != nil {
				s.slots.Release()
				return 0, s.slotWaitErr(ctx, err, " in the node's outbound pool")
			}
		}
	}
	if n == nil {
		return 0, nil
	}
	if !n.reserve(s.streamMem) {
		s.slots.Release()
		n.Outbound.Release()
		s.openLimited.Add(1)
		return 0, n.memErr(s.streamMem)
	}
	return s.streamMem, nil
}

func (s *Session) slotWaitErr(ctx context.Context, err error, where string) error {
	if err == errAborted {
		if err := s.noOpenErr(); err != nil {
			return err
		}
		return s.closedErr()
	}
	s.openLimited.Add(1)
	e := contextErr("mux: open stream: no stream slot free"+where, ctx).(*multiError)
	e.errs = append(e.errs, ErrStreamLimit)
	return e
}

// freeSlotLocked gives back the slot a released stream holds, if it still
// holds one. s.mu must be held.
func (s *Session) freeSlotLocked(st *Stream) {
	if st.freed {
		return
	}
	st.freed, st.slotHeld = true, false
	if st.slotTimer != nil {
		st.slotTimer.Stop()
	}
	if st.nodeSlot {
		s.nodeIn--
	}
	s.giveSlots(st, st.nodeSlot, st.mem)
	if st.inbound {
		s.inbound--
	} else {
		s.outbound--
	}
	s.publishStreamsLocked()
}

// giveSlots gives back a stream's session slot, its node slot (an
// inbound stream may have none: see serve) and its memory. st is nil for
// an outbound stream that was never made.
func (s *Session) giveSlots(st *Stream, nodeSlot bool, mem int64) {
	s.slots.Release()
	n := s.cfg.Node
	if n == nil {
		return
	}
	switch {
	case st != nil && st.inbound && nodeSlot:
		n.Inbound.Release()
	case st == nil || !st.inbound:
		n.Outbound.Release()
	}
	if mem > 0 {
		n.unreserve(mem)
	}
}

// openYamux opens a yamux stream, waiting no longer than ctx allows. yamux
// has no context, so a cancellable ctx costs a goroutine that finishes
// the open (and then closes an abandoned stream).
func (s *Session) openYamux(ctx context.Context) (*yamux.Stream, error) {
	if ctx.Done() == nil {
		return s.ys.OpenStream()
	}
	type result struct {
		ys  *yamux.Stream
		err error
	}
	ch := make(chan result, 1)
	var state atomic.Int32 // 0 waiting, 1 delivered, 2 abandoned
	s.mu.Lock()
	if !s.goLocked() {
		s.mu.Unlock()
		return nil, yamux.ErrSessionShutdown
	}
	s.mu.Unlock()
	go func() {
		defer s.exited(false)
		ys, err := s.ys.OpenStream()
		if state.CompareAndSwap(0, 1) {
			ch <- result{ys, err}
			return
		}
		if ys != nil {
			// Abandoned: the remote sees the stream end before a header
			// and drops it quietly. No Stream will adopt its flow.
			s.sched.drop(ys.StreamID())
			_ = ys.Close()
		}
	}()
	select {
	case r := <-ch:
		return r.ys, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(0, 2) {
			return nil, ctx.Err()
		}
		r := <-ch
		return r.ys, r.err
	}
}

func (s *Session) mapOpenErr(err error) error {
	switch {
	case err == yamux.ErrSessionShutdown:
		return s.closedErr()
	case err == yamux.ErrRemoteGoAway:
		// Seen by the frame tracker first, unless it had lost track of
		// the frames (see frameTracker).
		s.remoteGoAway.Store(true)
		return errGoAwayReceived
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("mux: open stream: %w", err)
}

// acceptLoop takes inbound yamux streams, refuses those past MaxStreams
// and starts a goroutine for each of the others. It is the session's only
// long-lived goroutine beyond yamux's own, and it ends the session's
// bookkeeping (Done, Err) when yamux shuts down.
func (s *Session) acceptLoop() {
	for {
		ys, err := s.ys.AcceptStream()
		if err != nil {
			if s.ys.IsClosed() {
				s.wakeStreams()
				s.finish(s.shutdownCause(err))
				s.acceptLoopDone()
				return
			}
			s.log.Warn().Err(err).Msg("accepting a stream failed")
			continue
		}
		id := ys.StreamID()
		s.fc.accepted(id)
		s.mu.Lock()
		// The slot and memory were taken at the stream's SYN (see
		// admitInbound), except for a SYN that came as a GoAway or
		// StartClose did.
		mem, admitted := s.synAdmitted[id]
		delete(s.synAdmitted, id)
		if s.closing {
			if admitted {
				s.giveInboundLocked(mem)
			}
			s.mu.Unlock()
			_ = ys.Close()
			continue
		}
		if !admitted {
			var (
				code ResetCode
				ok   bool
			)
			if mem, code, ok = s.takeInboundLocked(); !ok {
				s.mu.Unlock()
				s.refuse(ys, code)
				continue
			}
		}
		st := newStream(s, ys, true, PriorityNormal)
		st.mem = mem
		st.hdrDone.Store(true) // only an opener sends a header
		s.registerLocked(st)
		s.running++ // not closing, and the accept loop has not ended
		s.handlers++
		s.mu.Unlock()
		go s.serve(st)
	}
}

// acceptLoopDone ends the accept loop's part: from now on no goroutine
// starts (Wait's condition can only become true), except the one that
// closes yamux, which is started here if StartClose has not: yamux shut
// down by itself (the link failed, or a keepalive went unanswered) and
// is closing in its own goroutine; ours waits for that to finish, so that
// Wait covers yamux's goroutines in every case.
func (s *Session) acceptLoopDone() {
	s.mu.Lock()
	s.ended = true
	start := s.claimCloseLocked()
	s.mu.Unlock()
	if start {
		go s.closeYamux()
	}
	s.exited(false)
}

// serve reads an inbound stream's header, finds its handler and runs it.
//
// serve calls the handler itself, not through a closure: a stack that
// holds the frame of (*Session).serve is inside a handler, and callers
// outside the package (the connection manager) test for it.
func (s *Session) serve(st *Stream) {
	defer s.exited(true)
	var buf [maxStreamHeader]byte
	_ = st.ys.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	prio, proto, err := readStreamHeader(st.ys, &buf)
	_ = st.ys.SetReadDeadline(time.Time{})
	if err != nil {
		switch {
		case st.remoteReset.Load() || s.ys.IsClosed() || errors.Is(err, errNoHeader):
			// Nothing to answer: the opener gave up, or the link is gone.
			st.localReset.Store(true)
			_ = st.ys.Close()
		case errors.Is(err, ErrMalformedHeader) || err == yamux.ErrTimeout:
			s.malformed.Add(1)
			if err == yamux.ErrTimeout {
				err = fmt.Errorf("%w: none within %v", ErrMalformedHeader, s.cfg.HeaderTimeout)
			}
			s.log.Debug().Err(err).Uint32("stream", st.id).Msg("refusing stream")
			st.refuse(ResetMalformedHeader)
		default:
			s.log.Debug().Err(err).Uint32("stream", st.id).Msg("reading stream header failed")
			st.refuse(ResetMalformedHeader)
		}
		s.release(st) // if not done by refuse
		return
	}
	st.protocol = proto
	s.sched.setPriority(st, prio)
	s.mu.Lock()
	st.prioKnown = true
	if !st.released {
		s.addPriorityLocked(true, st.Priority(), 1)
	}
	full := !s.takeNodeInboundLocked(st)
	s.mu.Unlock()
	if full {
		s.limitRefused.Add(1)
		s.cfg.Totals.refused(false)
		s.log.Debug().Str("protocol", proto).Uint32("stream", st.id).Msg("refusing stream: the node's inbound streams are all in use")
		st.refuse(ResetStreamLimit)
		return
	}
	h := s.route(proto)
	if h == nil {
		s.unknownProto.Add(1)
		s.log.Debug().Str("protocol", proto).Uint32("stream", st.id).Msg("refusing stream: protocol not supported")
		st.refuse(ResetProtocolNotSupported)
		return
	}
	s.accepted.Add(1)
	s.cfg.Totals.streamOpened()
	defer s.handlerReturned(st)
	h(st)
}

// handlerReturned closes st once its handler has returned, or deals with
// the handler's panic (see Handler). A handler that called
// runtime.Goexit has its stream closed as if it had returned.
func (s *Session) handlerReturned(st *Stream) {
	v := recover()
	if v == nil {
		// Nobody will read what the remote still sends: the guard drops
		// it (and refuses it with code 7 past a window) rather than let
		// yamux buffer it, and yamux is made to free what it holds now.
		// The guard knows before the slot is given back.
		unread := !st.finSeen.Load() && !st.remoteReset.Load()
		if unread {
			s.guard.recvClosed(st.id)
		}
		_ = st.Close()
		if unread {
			s.forgetInYamux(st.id)
		}
		return
	}
	// Counted and reported before the reset, so that the remote, once it
	// sees the reset, finds the panic counted (HandlerPanics).
	s.panics.Add(1)
	s.log.Error().
		Str("protocol", st.protocol).
		Uint32("stream", st.id).
		Interface("panic", v).
		Str("stack", string(debug.Stack())).
		Msg("stream handler panicked")
	if f := s.cfg.OnHandlerPanic; f != nil {
		f(s.remote, st.protocol, v)
	}
	st.reset(ResetHandlerFailed)
}

// refuse resets a yamux stream that never became a Stream, with code.
func (s *Session) refuse(ys *yamux.Stream, code ResetCode) {
	if err := s.fc.injectRST(ys.StreamID(), code); err != nil {
		s.log.Debug().Err(err).Uint32("stream", ys.StreamID()).Msg("sending reset failed")
	}
	_ = ys.Close()
	s.forgetInYamux(ys.StreamID())
}

// takeNodeInboundLocked takes a NodeLimits.Inbound slot for st, whose
// header has arrived, within the session's share. s.mu must be held.
func (s *Session) takeNodeInboundLocked(st *Stream) bool {
	n := s.cfg.Node
	if n == nil || st.freed {
		return true
	}
	if (n.PeerInbound > 0 && s.nodeIn >= n.PeerInbound) || !n.Inbound.TryAcquire(PriorityNormal) {
		return false
	}
	s.nodeIn++
	st.nodeSlot = true
	return true
}

// wakeStreams makes every Read blocked in yamux, and every Write waiting
// in the scheduler, return. Once yamux's session is shut down, a blocked
// yamux Read spins (its wait loop keeps selecting the closed shutdown
// channel) until yamux's Close gets round to marking that stream closed,
// and with many blocked streams the spinning delays that very marking:
// 200 blocked handlers made Close take 71 s under the race detector. A
// deadline in the past makes them return at once instead (mapErr reports
// the session's end).
func (s *Session) wakeStreams() {
	s.sched.shutdown() // and Writes waiting in the scheduler
	past := time.Unix(1, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		_ = st.ys.SetReadDeadline(past)
	}
}

// linkFailed ends the session after a write to the link failed (the
// frame conn calls it once, from the writer whose write failed, holding
// no lock): part of a frame may be on the link, so nothing more can
// follow it. Writers waiting in the scheduler (for a turn, window or
// queue room) are let go at once, and yamux is closed in the session's
// close goroutine, so that no writer waits for the link's Close.
func (s *Session) linkFailed(err error) {
	s.linkErr.CompareAndSwap(nil, &err)
	s.log.Debug().Err(err).Msg("write to the link failed")
	s.sched.shutdown()
	s.mu.Lock()
	start := s.claimCloseLocked()
	s.mu.Unlock()
	if start {
		go s.closeYamux()
	}
}

// shutdownCause digs out yamux's reason for shutting down. AcceptStream
// returns it once the accept backlog is drained; until then it may report
// ErrSessionShutdown while handing over (or failing to hand over) streams
// that were waiting, which are closed.
func (s *Session) shutdownCause(err error) error {
	for i := 0; err == yamux.ErrSessionShutdown && i <= s.cfg.AcceptBacklog+1; i++ {
		ys, e := s.ys.AcceptStream()
		if ys != nil {
			_ = ys.Close()
			continue
		}
		err = e
	}
	return err
}

// finish records why the session ended, cancels the streams' Context and
// closes Done.
func (s *Session) finish(cause error) {
	s.teardown.Store(true)
	if le := s.linkErr.Load(); le != nil && !s.localClose.Load() &&
		(cause == yamux.ErrSessionShutdown || errors.Is(*le, ErrWriteTimeout)) {
		cause = *le // linkFailed closed yamux; a timed-out write is the root cause
	}
	switch {
	case cause == yamux.ErrSessionShutdown && s.localClose.Load():
		s.err, s.streamErr = ErrSessionClosed, ErrSessionClosed
	case cause == yamux.ErrKeepAliveTimeout:
		s.err = ErrKeepAliveTimeout
		s.streamErr = &multiError{"mux: session closed: keepalive timeout", []error{ErrSessionClosed, ErrKeepAliveTimeout}}
	default:
		var why string
		switch {
		case cause == yamux.ErrSessionShutdown:
			why = "yamux closed it (a stream open went unacknowledged for StreamOpenTimeout)"
		case cause == io.EOF:
			why = "remote closed the link (EOF)"
		default:
			why = cause.Error()
		}
		s.err = &multiError{"mux: session ended: " + why, []error{cause}}
		s.streamErr = &multiError{"mux: session closed: " + why, []error{ErrSessionClosed, cause}}
		if cause == io.EOF {
			// Session.Err wraps io.EOF (errors.Is(err, io.EOF) says the
			// remote closed the link), but a stream error must not pass for
			// a clean end of stream.
			s.streamErr = &multiError{"mux: session closed: " + why, []error{ErrSessionClosed}}
		}
	}
	// Streams the application never closed give their slots back now: a
	// GlobalSlots pool outlives the session, and would otherwise lose one
	// slot for each of them whenever a link dies.
	s.mu.Lock()
	for id, mem := range s.synAdmitted {
		s.giveInboundLocked(mem)
		delete(s.synAdmitted, id)
	}
	open := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		if !st.released {
			open = append(open, st)
		} else {
			s.freeSlotLocked(st)
		}
	}
	s.mu.Unlock()
	for _, st := range open {
		s.release(st) // teardown is set: frees at once
	}
	s.log.Debug().Err(s.err).Msg("session ended")
	s.cancel(s.streamErr)
	s.stopOpens()
	s.closed.Store(true)
	close(s.done)
}

// closedErr returns the error for an operation on a session that has shut
// down. The accept loop records the cause promptly once yamux is closed.
func (s *Session) closedErr() error {
	<-s.done
	return s.streamErr
}

type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }

// onFrame is the frame tracker's callback, on yamux's recv goroutine,
// before yamux handles the frame: a FIN or RST for stream id.
func (s *Session) onFrame(id uint32, flags uint16, code uint32) {
	if flags&flagRST != 0 {
		s.rstRecv[ResetCode(code).bucket()].Add(1)
	}
	s.mu.Lock()
	// A RST for a stream refused after a GoAway needs no answer: the
	// remote never took the stream, so it keeps nothing to free.
	if flags&flagRST != 0 && code != 0 && ResetCode(code) != ResetGoingAway {
		s.queueAckLocked(id)
	}
	if st := s.streams[id]; st != nil {
		st.noteFrame(flags, code)
		if flags&flagRST != 0 {
			s.sched.kick(st) // a Write waiting for window will get none
		}
		if st.released {
			s.freeSlotLocked(st) // the remote has freed its own
			delete(s.streams, id)
			s.lingering--
		}
	} else {
		s.early[s.earlyNext] = earlyFrame{id: id, flags: flags, code: code, used: true}
		s.earlyNext = (s.earlyNext + 1) % earlyRingSize
		if flags&flagRST != 0 {
			s.sched.drop(id)
		}
	}
	s.mu.Unlock()
}

// maxAcks bounds the resets waiting to be sent; beyond it they are
// dropped (the remote then frees the stream at its StreamCloseTimeout).
const maxAcks = 1024

// queueAckLocked arranges for a plain RST (code 0) to answer the remote's
// coded RST for stream id. The remote sent its RST and then closed the
// stream locally (yamux can only half-close), so yamux keeps the stream
// until our FIN, which will not come, or its StreamCloseTimeout; a RST
// from us frees it at once. Only coded RSTs are answered, so two mux
// sessions never echo RSTs back and forth, and not those of code
// ResetGoingAway (see onFrame).
func (s *Session) queueAckLocked(id uint32) { s.queueResetLocked(id, ResetUnknown) }

// queueResetLocked arranges for a RST with code to be sent for stream id.
// Frames cannot be written from the recv goroutine that decides most of
// them (a write there can deadlock with the remote's recv goroutine doing
// the same), so one short-lived goroutine at a time sends the queued
// resets and ping answers (sendControl).
func (s *Session) queueResetLocked(id uint32, code ResetCode) {
	if s.closing || len(s.acks) >= maxAcks {
		return
	}
	s.acks = append(s.acks, ctrlRST{id, code})
	s.startControlLocked()
}

// startControlLocked starts the control goroutine unless it runs.
func (s *Session) startControlLocked() {
	if s.ackBusy || !s.goLocked() {
		return
	}
	s.ackBusy = true
	go s.sendControl()
}

func (s *Session) sendControl() {
	defer s.exited(false)
	var (
		rsts  []ctrlRST
		pongs [][frameHeaderLen]byte
	)
	for {
		pongs = s.guard.takePongs(pongs)
		s.mu.Lock()
		rsts, s.acks = s.acks, rsts[:0]
		if (len(rsts) == 0 && len(pongs) == 0) || s.ys.IsClosed() {
			s.ackBusy = false
			s.acks = s.acks[:0]
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, f := range pongs {
			if err := s.fc.writeControl(f); err != nil {
				s.log.Debug().Err(err).Msg("answering a ping failed")
			}
		}
		for _, r := range rsts {
			if err := s.fc.writeControl(rstFrame(r.id, r.code)); err != nil {
				s.log.Debug().Err(err).Uint32("stream", r.id).Msg("sending reset failed")
			}
		}
	}
}

// registerLocked adds st to the stream map, applying any FIN or RST that
// arrived for its ID before.
func (s *Session) registerLocked(st *Stream) {
	s.streams[st.id] = st
	for i := range s.early {
		if e := &s.early[i]; e.used && e.id == st.id {
			st.noteFrame(e.flags, e.code)
			e.used = false
		}
	}
}

const minSweep = 64

// release ends st's use of its stream slot, once. The stream stays in the
// map until the remote's FIN or RST is seen (so that a Read after a local
// Close can still tell a clean end from a dead session), or, failing
// that, until StreamCloseTimeout after the release, when yamux has
// dropped it too.
//
// The slot itself goes back at once, except for an outbound stream
// closed while the remote still has it open: that one is kept until the
// remote's FIN or RST. The remote counts the stream until its handler
// returns, and frees the slot before it sends its FIN; freeing ours only
// then keeps the two ends' counts alike, so that an opener waiting for a
// slot is not handed one the remote would refuse (reset with
// ErrStreamLimit). A Reset frees at once: no FIN follows a reset.
func (s *Session) release(st *Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.released {
		return
	}
	st.released = true
	if st.prioKnown {
		s.addPriorityLocked(st.inbound, st.Priority(), -1)
	}
	s.sched.forget(st.fl)
	remoteDone := st.finSeen.Load() || st.remoteReset.Load() || st.localReset.Load()
	if st.inbound || remoteDone || s.teardown.Load() {
		s.freeSlotLocked(st)
	} else {
		st.slotHeld = true
		st.slotTimer = time.AfterFunc(s.cfg.StreamCloseTimeout, func() {
			// yamux gives up on the remote's FIN now, and so do we.
			s.mu.Lock()
			s.freeSlotLocked(st)
			s.mu.Unlock()
		})
	}
	if remoteDone {
		if s.streams[st.id] == st {
			delete(s.streams, st.id)
		}
		return
	}
	now := time.Now()
	st.releasedAt = now
	s.lingering++
	if s.lingering > s.sweepAt {
		for id, o := range s.streams {
			if o.released && now.Sub(o.releasedAt) > s.cfg.StreamCloseTimeout {
				s.freeSlotLocked(o)
				delete(s.streams, id)
				s.lingering--
			}
		}
		s.sweepAt = max(minSweep, 2*s.lingering)
	}
}

// claimCloseLocked reports whether the caller is the one to run
// closeYamux (once per session), and if so counts its goroutine. s.mu
// must be held.
func (s *Session) claimCloseLocked() bool {
	if s.closeStarted {
		return false
	}
	s.closeStarted = true
	s.running++
	return true
}

// publishStreamsLocked stores the stream counts for lock-free readers.
// s.mu must be held.
func (s *Session) publishStreamsLocked() {
	in := s.inbound - int(s.pubIn.Swap(int32(s.inbound)))
	out := s.outbound - int(s.pubOut.Swap(int32(s.outbound)))
	s.cfg.Totals.addStreams(int64(in), int64(out))
}

// addPriorityLocked counts d streams of priority p, inbound or not, in or
// out of StreamsByPriority and the node's Totals. s.mu must be held.
func (s *Session) addPriorityLocked(inbound bool, p Priority, d int32) {
	s.prioOpen[p].Add(d)
	s.cfg.Totals.addPriority(inbound, p, int64(d))
}

// Figures are a session's figures read without a lock (see Figures).
type Figures struct {
	Inbound, Outbound int                // as StreamCounts
	ByPriority        [NumPriorities]int // as StreamsByPriority
	QueuedWrites      int                // Writes in the write queue
	QueuedBytes       int64              // what they count against MaxQueuedBytes
	Utilization       float64            // QueuedBytes over MaxQueuedBytes
	BytesIn, BytesOut uint64             // as BytesIn, BytesOut
	Streams           uint64             // opened and accepted since the start
	LimitRefusals     uint64             // as SessionStats
	BudgetRefusals    uint64             // as SessionStats
}

// Figures returns the session's figures from atomic loads alone, for a
// caller that reads thousands of sessions (a node's statistics): each
// figure is exact as of its load, but the figures are not one atomic
// snapshot of the session.
func (s *Session) Figures() Figures {
	f := Figures{
		ByPriority:     s.StreamsByPriority(),
		Inbound:        int(s.pubIn.Load()),
		Outbound:       int(s.pubOut.Load()),
		QueuedWrites:   int(s.sched.pubWrites.Load()),
		QueuedBytes:    s.sched.pubBytes.Load(),
		BytesIn:        s.fc.in.Load(),
		BytesOut:       s.fc.out.Load(),
		Streams:        s.opened.Load() + s.accepted.Load(),
		LimitRefusals:  s.limitRefused.Load(),
		BudgetRefusals: s.budgetRefused.Load(),
	}
	if s.sched.maxBytes > 0 {
		f.Utilization = float64(f.QueuedBytes) / float64(s.sched.maxBytes)
	}
	return f
}
