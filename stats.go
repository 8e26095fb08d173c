package peerlink

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/metrics"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/warming"
)

// nodeStats are the manager's node-wide figures, recorded where things
// happen (a link opens or closes, a dial ends, a circuit changes, a
// health check or a request ends) with lock-free metrics: recording costs
// an atomic add or two, never a lock.
type nodeStats struct {
	opened       [2]metrics.Counter // inbound, outbound
	closed       [numReasons]metrics.Counter
	dials        metrics.Counter
	dialing      metrics.Gauge // dials in flight
	dialErrors   [numDialErrors]metrics.Counter
	handshake    metrics.Histogram // handshake RTT of each new link
	requests     metrics.Histogram // request latencies (RecordSuccess, Selection.Done)
	reqErrors    metrics.Counter
	circuits     [3]metrics.Counter // transitions into closed, half-open, open
	checks       metrics.Counter
	checkFails   metrics.Counter
	links        [2]metrics.Gauge // registered links open now: inbound, outbound
	warming      [4]metrics.Gauge // peers by warming state (Cold unused)
	warmAttempts metrics.Counter
	warmFailures metrics.Counter
	// streams sums every session's figures (streams, queues, bytes,
	// refusals) as they change, so Statistics reads them in O(1).
	streams mux.Totals

	// Throughput: each Statistics call adds what moved since the one
	// before to these rates (a minute's window), so the figures are
	// per-second averages over the calls of the last minute.
	rateMu          sync.Mutex
	inRate, outRate *metrics.Rate
	streamRate      *metrics.Rate
	lastIn, lastOut uint64
	lastStreams     uint64
}

// throughputWindow is the window of the per-second figures: 6 buckets of
// 10 s.
const (
	throughputBuckets = 6
	throughputBucket  = 10 * time.Second
)

const numReasons = int(ReasonIdle) + 1

// DialError classes for Statistics.Dials.Errors.
const (
	DialErrorTimeout     = "timeout"      // no answer within the dial's time
	DialErrorRefused     = "refused"      // connection refused, or the listener's verdict
	DialErrorBusy        = "busy"         // transport.ErrListenerBusy
	DialErrorAddrLimit   = "addr_limit"   // transport.ErrAddrConnLimit
	DialErrorIdentity    = "identity"     // another peer, another network, a bad certificate
	DialErrorCircuitOpen = "circuit_open" // the peer's circuit breaker refused the dial
	DialErrorLimit       = "limit"        // our own connection limits
	DialErrorCanceled    = "canceled"     // the caller gave up, or the manager closed
	DialErrorOther       = "other"
)

// dialErrorKind indexes nodeStats.dialErrors and dialErrorNames.
type dialErrorKind int

const (
	dialTimeout dialErrorKind = iota
	dialRefused
	dialBusy
	dialAddrLimit
	dialIdentity
	dialCircuitOpen
	dialLimit
	dialCanceled
	dialOther
	numDialErrors
)

var dialErrorNames = [numDialErrors]string{DialErrorTimeout, DialErrorRefused, DialErrorBusy, DialErrorAddrLimit,
	DialErrorIdentity, DialErrorCircuitOpen, DialErrorLimit, DialErrorCanceled, DialErrorOther}

// dialErrorClass sorts a dial's error into its kind.
func dialErrorClass(err error) dialErrorKind {
	var refused *transport.RemoteRefusedError
	switch {
	case errors.Is(err, transport.ErrListenerBusy):
		return dialBusy
	case errors.Is(err, transport.ErrAddrConnLimit):
		return dialAddrLimit
	case errors.Is(err, ErrCircuitOpen):
		return dialCircuitOpen
	case errors.Is(err, ErrConnectionLimit), errors.Is(err, ErrInboundLimit):
		return dialLimit
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed), errors.Is(err, ErrShuttingDown):
		return dialCanceled
	case errors.Is(err, transport.ErrPeerIDMismatch), errors.Is(err, transport.ErrNetworkMismatch),
		errors.Is(err, transport.ErrInvalidCertificate), errors.Is(err, transport.ErrCertificateRejected):
		return dialIdentity
	case errors.As(err, &refused), errors.Is(err, transport.ErrNoListener), errors.Is(err, syscall.ECONNREFUSED):
		return dialRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, transport.ErrHandshakeTimeout):
		return dialTimeout
	}
	return dialOther
}

// Statistics are the manager's figures at one moment (seed 002's
// get_connection_statistics): cheap enough to take every second however
// many links there are. Stream, queue and byte figures are kept as the
// links' sessions change them (mux.Totals), so reading them costs the
// same with ten links or ten thousand.
type Statistics struct {
	Time  time.Time
	Peers int // peer records kept (see KnownPeers)

	Connections ConnectionStatistics
	Streams     StreamStatistics
	Dials       DialStatistics
	Circuits    CircuitStatistics
	Health      HealthStatistics
	Queue       QueueStatistics
	Warming     WarmingStatistics
	// Handshake is the handshake RTT of each link opened; Requests the
	// latencies reported by RecordSuccess and Selection.Done.
	Handshake LatencyStatistics
	Requests  LatencyStatistics
	// RequestErrors counts RecordError calls and failed Selections.
	RequestErrors uint64
	// BytesIn and BytesOut: over every link, open or closed.
	BytesIn, BytesOut uint64
	// BytesInPerSecond, BytesOutPerSecond and StreamsPerSecond (streams
	// opened, both directions: the messages of a request/response
	// protocol) are averaged over the Statistics calls of the last
	// minute: call Statistics at least every few seconds (a scraper
	// does) for them to mean anything.
	BytesInPerSecond, BytesOutPerSecond, StreamsPerSecond float64
	// Memory is what streams are charged against NodeMemoryBudget.
	Memory, MemoryLimit int64
	// Transport is the listener's and the dialer's own account: sockets
	// admitted, refused as busy or for their address, evicted, failed.
	Transport transport.Stats
	// Trim counts trims and refusals at the high water mark (trim.go).
	Trim TrimStatistics
}

// ConnectionStatistics counts links.
type ConnectionStatistics struct {
	Open, Inbound, Outbound int
	Opened                  [2]uint64         // since start: inbound, outbound
	Closed                  map[string]uint64 // since start, by DisconnectReason.String()
}

// StreamStatistics counts the streams open now, over every session still
// running (a link being closed counts until its handlers return).
type StreamStatistics struct {
	Open, Inbound, Outbound int
	ByPriority              [mux.NumPriorities]int
	// ByDirection splits ByPriority: [0] inbound, [1] outbound (as
	// Connections.Opened). An inbound stream has a priority once its
	// header has arrived; until then it counts in Inbound only.
	ByDirection [2][mux.NumPriorities]int
	// Refused: inbound streams reset for want of a slot or memory, of
	// which MemoryRefused for want of memory (open and closed links).
	Refused, MemoryRefused uint64
}

// DialStatistics counts dials (one per Connect that dials, happy-eyeballs
// attempts together) and their failures by class (DialError*); InFlight
// are the dials running now (peers being connected).
type DialStatistics struct {
	Attempts uint64
	InFlight int
	Errors   map[string]uint64
}

// CircuitStatistics counts circuit breaker transitions by the state
// entered ("closed", "half-open", "open").
type CircuitStatistics struct {
	Transitions map[string]uint64
}

// WarmingStatistics count peers by warming state (see WarmingState) and
// the warming attempts made and failed since start.
type WarmingStatistics struct {
	Warming, Warm, Failed int
	Attempts, Failures    uint64
}

// HealthStatistics counts the health checks made and those that failed.
type HealthStatistics struct {
	Checks, Failures uint64
}

// QueueStatistics sums the links' write queues.
type QueueStatistics struct {
	Writes      int   // Writes waiting or in progress
	QueuedBytes int64 // what they count against MaxQueuedBytes
	// Utilization is the fullest link's QueuedBytes over MaxQueuedBytes,
	// rounded down to a sixteenth (1 means some link's queue is full and
	// its writers wait, or fail under FailFastWrites); StreamStats gives
	// one link's exactly.
	Utilization float64
}

// LatencyStatistics summarise a latency histogram (relative error under
// 1 %).
type LatencyStatistics struct {
	Count                    uint64
	Mean, P50, P90, P99, Max time.Duration
}

func latencyOf(h *metrics.Histogram) LatencyStatistics {
	s := h.Snapshot()
	return LatencyStatistics{
		Count: s.Count, Mean: s.Mean(), P50: s.Quantile(0.5), P90: s.Quantile(0.9), P99: s.Quantile(0.99), Max: s.Max,
	}
}

// Statistics returns the manager's figures now.
func (m *ConnectionManager) Statistics() Statistics {
	st := &m.stats
	s := Statistics{
		Time:          m.clock.Now(),
		Peers:         m.peers.Len(),
		Handshake:     latencyOf(&st.handshake),
		Requests:      latencyOf(&st.requests),
		RequestErrors: st.reqErrors.Load(),
		Dials:         DialStatistics{Attempts: st.dials.Load(), InFlight: int(st.dialing.Load()), Errors: make(map[string]uint64)},
		Circuits:      CircuitStatistics{Transitions: make(map[string]uint64)},
		Health:        HealthStatistics{Checks: st.checks.Load(), Failures: st.checkFails.Load()},
	}
	s.Connections.Opened = [2]uint64{st.opened[0].Load(), st.opened[1].Load()}
	s.Warming = WarmingStatistics{
		Warming: int(st.warming[warming.Warming].Load()), Warm: int(st.warming[warming.Warm].Load()),
		Failed: int(st.warming[warming.Failed].Load()), Attempts: st.warmAttempts.Load(), Failures: st.warmFailures.Load(),
	}
	s.Connections.Closed = make(map[string]uint64)
	for i := range st.closed {
		if n := st.closed[i].Load(); n > 0 {
			s.Connections.Closed[DisconnectReason(i).String()] = n
		}
	}
	for i, name := range dialErrorNames {
		if n := st.dialErrors[i].Load(); n > 0 {
			s.Dials.Errors[name] = n
		}
	}
	for i, to := range []breaker.State{breaker.StateClosed, breaker.StateHalfOpen, breaker.StateOpen} {
		if n := st.circuits[i].Load(); n > 0 {
			s.Circuits.Transitions[to.String()] = n
		}
	}
	s.Connections.Inbound, s.Connections.Outbound = int(st.links[0].Load()), int(st.links[1].Load())
	s.Connections.Open = s.Connections.Inbound + s.Connections.Outbound
	// Every session adds to st.streams as it goes (mux.Totals): no pass
	// over the links, however many there are.
	f := st.streams.Figures()
	s.Streams.Inbound, s.Streams.Outbound, s.Streams.ByPriority = f.Inbound, f.Outbound, f.ByPriority
	s.Streams.ByDirection[1], s.Streams.ByDirection[0] = st.streams.ByDirection()
	s.Streams.Refused, s.Streams.MemoryRefused = f.LimitRefusals, f.BudgetRefusals
	s.Queue = QueueStatistics{Writes: f.QueuedWrites, QueuedBytes: f.QueuedBytes, Utilization: f.Utilization}
	s.BytesIn, s.BytesOut = f.BytesIn, f.BytesOut
	streams := f.Streams
	s.Streams.Open = s.Streams.Inbound + s.Streams.Outbound
	s.BytesInPerSecond, s.BytesOutPerSecond, s.StreamsPerSecond = st.throughput(s.Time, s.BytesIn, s.BytesOut, streams)
	if n := m.muxCfg.Node; n != nil {
		s.Memory, s.MemoryLimit = n.MemoryInUse(), n.MemoryLimit()
	}
	if ts, ok := m.tr.(interface{ Stats() transport.Stats }); ok {
		s.Transport = ts.Stats()
	}
	s.Trim = m.trimStatistics()
	return s
}

// noteWarming counts a peer's warming transition.
func (st *nodeStats) noteWarming(from, to warming.State) {
	if from != warming.Cold {
		st.warming[from].Dec()
	}
	if to != warming.Cold {
		st.warming[to].Inc()
	}
	switch to {
	case warming.Warming:
		st.warmAttempts.Inc()
	case warming.Failed:
		st.warmFailures.Inc()
	}
}

// dirIndex is a direction's index in nodeStats.opened.
func dirIndex(d transport.Direction) int {
	if d == transport.Inbound {
		return 0
	}
	return 1
}

// throughput adds what moved since the previous call to the rates and
// returns them per second.
func (st *nodeStats) throughput(now time.Time, in, out, streams uint64) (inPS, outPS, streamsPS float64) {
	st.rateMu.Lock()
	defer st.rateMu.Unlock()
	if st.inRate == nil {
		st.inRate = metrics.NewRate(throughputBuckets, throughputBucket)
		st.outRate = metrics.NewRate(throughputBuckets, throughputBucket)
		st.streamRate = metrics.NewRate(throughputBuckets, throughputBucket)
	}
	// Totals only grow, but a link closing between the two reads of a
	// Statistics call can make one look smaller: count no negative.
	if in > st.lastIn {
		st.inRate.Add(in-st.lastIn, now)
		st.lastIn = in
	}
	if out > st.lastOut {
		st.outRate.Add(out-st.lastOut, now)
		st.lastOut = out
	}
	if streams > st.lastStreams {
		st.streamRate.Add(streams-st.lastStreams, now)
		st.lastStreams = streams
	}
	return st.inRate.PerSecond(now), st.outRate.PerSecond(now), st.streamRate.PerSecond(now)
}
