package peerlink

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerlink/peerlink/metrics"
	"github.com/peerlink/peerlink/mux"
)

// latencyBuckets are the upper bounds of the buckets of
// peerlink_handshake_latency_seconds and peerlink_request_latency_seconds,
// from 100 µs to 10 s. The buckets are cut at scrape time from the
// manager's log-linear histograms (relative error under 1 %), so they
// cost nothing when recording.
var latencyBuckets = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// PrometheusOptions adjust NewPrometheusCollector.
type PrometheusOptions struct {
	// PeerScores, if positive, adds the gauge
	// peerlink_peer_quality_score{peer} for the PeerScores best and the
	// PeerScores worst peers of HealthyPeers (at most 2 × PeerScores
	// series, each peer once). Off by default: a label per peer is
	// unbounded cardinality for the time series database, and the set
	// of peers shown changes from one scrape to the next.
	PeerScores int
}

// PrometheusCollector returns a prometheus.Collector of the manager's
// figures (see NewPrometheusCollector), for registering into your own
// registry:
//
//	reg.MustRegister(m.PrometheusCollector())
func (m *ConnectionManager) PrometheusCollector() prometheus.Collector {
	return NewPrometheusCollector(m, PrometheusOptions{})
}

// MetricsHandler returns an http.Handler serving the manager's metrics in
// the Prometheus exposition formats from a registry of its own, holding
// only the manager's collector (no Go runtime or process metrics):
//
//	http.Handle("/metrics", m.MetricsHandler())
//
// To serve them with the rest of your process's metrics instead, register
// m.PrometheusCollector() into your registry (prometheus.DefaultRegisterer
// for promhttp.Handler()).
func (m *ConnectionManager) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.PrometheusCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// NewPrometheusCollector returns a prometheus.Collector of m's figures.
// Each Collect makes one Statistics call (one pass over the open links)
// and snapshots the two latency histograms, and sends const metrics
// built from them: nothing is recorded twice, and a manager nobody
// scrapes pays nothing. The metrics carry no per-peer labels unless
// opts.PeerScores asks for them. Collect is safe for concurrent use;
// after the manager is closed it reports its last figures.
//
// The counters derived from sums over the open links (bytes, stream
// refusals) are kept monotonic: a link that closes during a scrape can
// drop out of one sum before it is added to the closed links' total, and
// the collector then repeats the previous value rather than report a
// counter reset.
func NewPrometheusCollector(m *ConnectionManager, opts PrometheusOptions) prometheus.Collector {
	return &promCollector{m: m, opts: opts}
}

const promNS = "peerlink"

func promDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(promNS+"_"+name, help, labels, nil)
}

// The metrics. Label values are fixed sets (no per-peer labels but the
// opt-in peer_quality_score).
var (
	descOpened = promDesc("connections_opened_total",
		"Links opened since start, by direction (inbound, outbound).", "direction")
	descClosed = promDesc("connections_closed_total",
		"Links closed since start, by reason (local, remote, error, replaced, shutdown, unhealthy, trimmed, idle).", "reason")
	descConns = promDesc("connections",
		"Links open now, by direction.", "direction")
	descPeers = promDesc("peers",
		"Peers with an open link now (like libp2p_peers).")
	descRecords = promDesc("peer_records",
		"Peer records kept (known peers, linked or not).")
	descDials = promDesc("dials_total",
		"Dials made: one per Connect that dials, happy-eyeballs attempts together.")
	descDialing = promDesc("dials_in_flight",
		"Dials running now (peers being connected).")
	descWarmPeers = promDesc("warming_peers",
		"Peers by warming state now (warming, warm, failed; the rest are cold).", "state")
	descWarmAttempts = promDesc("warming_attempts_total",
		"Warming attempts started (dial, handshake and ping).")
	descWarmFailures = promDesc("warming_failures_total",
		"Warming attempts that failed.")
	descDialErrors = promDesc("dial_errors_total",
		"Failed dials by class (timeout, refused, busy, addr_limit, identity, circuit_open, limit, canceled, other).", "reason")
	descHandshake = promDesc("handshake_latency_seconds",
		"Handshake round-trip time of each link opened, in seconds.")
	descRequests = promDesc("request_latency_seconds",
		"Request latencies reported by RecordSuccess and Selection.Done, in seconds.")
	descReqErrors = promDesc("request_errors_total",
		"Request errors: RecordError calls and failed Selections.")
	descStreams = promDesc("streams",
		"Streams open now, by direction and priority (low, normal, high, critical); an inbound stream counts once its header has arrived.", "direction", "priority")
	descStreamRefusals = promDesc("stream_refusals_total",
		"Inbound streams reset since start, by cause: limit (no stream slot) or memory (stream memory budget).", "cause")
	descCircuits = promDesc("circuit_transitions_total",
		"Circuit breaker transitions, by the state entered (closed, half_open, open).", "state")
	descChecks = promDesc("health_checks_total",
		"Health checks (pings) made.")
	descCheckFails = promDesc("health_check_failures_total",
		"Health checks that failed.")
	descQueueWrites = promDesc("write_queue_writes",
		"Writes waiting or in progress in the write queues of the open links.")
	descQueueBytes = promDesc("write_queue_bytes",
		"Bytes queued in the write queues of the open links (counted against MaxQueuedBytes).")
	descQueueUtil = promDesc("write_queue_utilization",
		"The fullest link's queued bytes over MaxQueuedBytes (0..1).")
	descBytesIn = promDesc("bytes_received_total",
		"Bytes received over every link, open or closed.")
	descBytesOut = promDesc("bytes_sent_total",
		"Bytes sent over every link, open or closed.")
	descMemory = promDesc("stream_memory_bytes",
		"Stream memory charged against NodeMemoryBudget now.")
	descMemoryLimit = promDesc("stream_memory_limit_bytes",
		"NodeMemoryBudget: the stream memory limit.")
	descListenerRefusals = promDesc("listener_refusals_total",
		"Inbound sockets refused by the listeners, by cause: busy (pending-handshake caps full), addr_limit (MaxInboundPerIP), gater (the Gater).", "cause")
	descListenerEvictions = promDesc("listener_evictions_total",
		"Pending inbound sockets closed to make room for a new one, by kind (silent, slow).", "kind")
	descListenerPending = promDesc("listener_pending_handshakes",
		"Inbound sockets pending now (handshaking, or admitted and waiting for Accept).")
	descFirstByte = promDesc("listener_first_byte_timeouts_total",
		"Inbound sockets closed for sending nothing within FirstByteTimeout.")
	descTrims = promDesc("trims_total",
		"Trims run (past the high water mark, TrimOpenConns, SetConnectionLimits); the links they closed are connections_closed_total{reason=\"trimmed\"}.")
	descHighWater = promDesc("high_water_refusals_total",
		"Inbound links refused at the high water mark (back pressure while a trim may not run).")
	descPeerScore = promDesc("peer_quality_score",
		"Quality score of the best and worst healthy peers (opt-in, bounded).", "peer")
)

// reasonLabels are the connections_closed_total label values, indexed by
// DisconnectReason; reasonKeys the keys of Statistics.Connections.Closed.
var (
	reasonLabels = [numReasons]string{ReasonNone: "none", ReasonLocal: "local", ReasonRemote: "remote",
		ReasonError: "error", ReasonReplaced: "replaced", ReasonShutdown: "shutdown", ReasonUnhealthy: "unhealthy",
		ReasonTrimmed: "trimmed", ReasonIdle: "idle"}
	circuitLabels = [...]struct{ key, label string }{{"closed", "closed"}, {"half-open", "half_open"}, {"open", "open"}}
)

// promCollector collects a manager's metrics.
type promCollector struct {
	m    *ConnectionManager
	opts PrometheusOptions

	mu sync.Mutex // guards the rest: scratch and last values
	hs metrics.HistogramSnapshot
	rq metrics.HistogramSnapshot
	// last values of the counters summed over open links, kept monotonic
	bytesIn, bytesOut, refusedLimit, refusedMem uint64
}

func (c *promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOpened, descClosed, descConns, descPeers, descRecords,
		descDials, descDialing, descWarmPeers, descWarmAttempts, descWarmFailures, descDialErrors, descHandshake, descRequests, descReqErrors, descStreams,
		descStreamRefusals, descCircuits, descChecks, descCheckFails,
		descQueueWrites, descQueueBytes, descQueueUtil, descBytesIn, descBytesOut, descMemory,
		descMemoryLimit, descListenerRefusals, descListenerEvictions, descListenerPending, descFirstByte,
		descTrims, descHighWater} {
		ch <- d
	}
	if c.opts.PeerScores > 0 {
		ch <- descPeerScore
	}
}

// monotonic returns max(*last, v) and keeps it in *last.
func monotonic(last *uint64, v uint64) float64 {
	*last = max(*last, v)
	return float64(*last)
}

// promHistogram builds a const histogram of s over latencyBuckets, in
// seconds.
func promHistogram(d *prometheus.Desc, s *metrics.HistogramSnapshot, scratch []uint64) (prometheus.Metric, []uint64) {
	scratch = s.CumulativeCounts(latencyBuckets, scratch)
	buckets := make(map[float64]uint64, len(latencyBuckets))
	for i, ub := range latencyBuckets {
		buckets[ub.Seconds()] = scratch[i]
	}
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets), scratch
}

func (c *promCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	s := m.Statistics()

	c.mu.Lock()
	// Statistics summarises the histograms; Prometheus wants their
	// buckets, read here from the same recorders.
	m.stats.handshake.SnapshotInto(&c.hs)
	m.stats.requests.SnapshotInto(&c.rq)
	var counts [16]uint64 // room for latencyBuckets without allocating
	hsMetric, scratch := promHistogram(descHandshake, &c.hs, counts[:0])
	rqMetric, _ := promHistogram(descRequests, &c.rq, scratch)
	bytesIn := monotonic(&c.bytesIn, s.BytesIn)
	bytesOut := monotonic(&c.bytesOut, s.BytesOut)
	limitRefused := s.Streams.Refused - min(s.Streams.MemoryRefused, s.Streams.Refused)
	refusedLimit := monotonic(&c.refusedLimit, limitRefused)
	refusedMem := monotonic(&c.refusedMem, s.Streams.MemoryRefused)
	c.mu.Unlock()

	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	cs := &s.Connections
	counter(descOpened, float64(cs.Opened[0]), "inbound")
	counter(descOpened, float64(cs.Opened[1]), "outbound")
	for r := ReasonLocal; int(r) < numReasons; r++ {
		counter(descClosed, float64(cs.Closed[r.String()]), reasonLabels[r])
	}
	gauge(descConns, float64(cs.Inbound), "inbound")
	gauge(descConns, float64(cs.Outbound), "outbound")
	gauge(descPeers, float64(cs.Open))
	gauge(descRecords, float64(s.Peers))

	counter(descDials, float64(s.Dials.Attempts))
	gauge(descDialing, float64(s.Dials.InFlight))
	gauge(descWarmPeers, float64(s.Warming.Warming), "warming")
	gauge(descWarmPeers, float64(s.Warming.Warm), "warm")
	gauge(descWarmPeers, float64(s.Warming.Failed), "failed")
	counter(descWarmAttempts, float64(s.Warming.Attempts))
	counter(descWarmFailures, float64(s.Warming.Failures))
	for _, name := range dialErrorNames {
		counter(descDialErrors, float64(s.Dials.Errors[name]), name)
	}
	ch <- hsMetric
	ch <- rqMetric
	counter(descReqErrors, float64(s.RequestErrors))

	for d, dir := range [2]string{"inbound", "outbound"} {
		for p, n := range s.Streams.ByDirection[d] {
			gauge(descStreams, float64(n), dir, mux.Priority(p).String())
		}
	}
	counter(descStreamRefusals, refusedLimit, "limit")
	counter(descStreamRefusals, refusedMem, "memory")

	for _, st := range circuitLabels {
		counter(descCircuits, float64(s.Circuits.Transitions[st.key]), st.label)
	}
	counter(descChecks, float64(s.Health.Checks))
	counter(descCheckFails, float64(s.Health.Failures))

	gauge(descQueueWrites, float64(s.Queue.Writes))
	gauge(descQueueBytes, float64(s.Queue.QueuedBytes))
	gauge(descQueueUtil, s.Queue.Utilization)
	counter(descBytesIn, bytesIn)
	counter(descBytesOut, bytesOut)
	gauge(descMemory, float64(s.Memory))
	gauge(descMemoryLimit, float64(s.MemoryLimit))

	t := &s.Transport
	counter(descListenerRefusals, float64(t.InboundOverLimit), "busy")
	counter(descListenerRefusals, float64(t.InboundAddrLimit), "addr_limit")
	counter(descListenerRefusals, float64(t.InboundRefused), "gater")
	counter(descListenerEvictions, float64(t.InboundEvictedSilent), "silent")
	counter(descListenerEvictions, float64(t.InboundEvictedSlow), "slow")
	gauge(descListenerPending, float64(t.InboundPending))
	counter(descFirstByte, float64(t.InboundFirstByteTimeout))
	counter(descTrims, float64(s.Trim.Trims))
	counter(descHighWater, float64(s.Trim.HighWaterRefusals))

	if n := c.opts.PeerScores; n > 0 {
		ps := m.HealthyPeers() // best first
		if len(ps) > 2*n {
			ps = append(ps[:n], ps[len(ps)-n:]...)
		}
		for _, p := range ps {
			gauge(descPeerScore, p.Score, p.Peer.String())
		}
	}
}
