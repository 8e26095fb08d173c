package simulation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
)

// NodeResult is what one node recorded over a run (RunNode; peersim node
// writes it as JSON at exit, to NodeConfig.Results or stdout), and what
// Gather merges, over the nodes of a run, into a Result. An
// orchestrator's tooling can read it: its JSON field names are the tags',
// times are Go duration strings ("1.5s") from Start.
type NodeResult struct {
	Node int     `json:"node"`
	ID   peer.ID `json:"id"`
	// Start and Duration are the config's; Ended is when the node
	// stopped, from Start: Duration, or earlier if a signal stopped it.
	Start    time.Time `json:"start"`
	Duration Duration  `json:"duration"`
	Ended    Duration  `json:"ended"`
	// Events is the node's log, in the order it happened.
	Events []NodeEvent `json:"events"`
	// DroppedEvents counts events past NodeConfig.MaxEvents, not kept;
	// LostEvents the connection events the manager's subscription lost
	// (its buffer full). The measures miss both.
	DroppedEvents uint64 `json:"dropped_events"`
	LostEvents    uint64 `json:"lost_events"`
	// Process is the node's process near the end (before it shut down).
	Process ProcessStats `json:"process"`
	// Stats are the manager's own counters at the end.
	Stats NodeStats `json:"stats"`
}

// NodeEvent kinds.
const (
	// NodeEventConnected and NodeEventDisconnected: a link to Peer came up
	// or closed (Dir "inbound" or "outbound"; Cause the
	// peerlink.DisconnectReason of a close).
	NodeEventConnected    = "connected"
	NodeEventDisconnected = "disconnected"
	// NodeEventPublished: the node published gossip message Msg.
	NodeEventPublished = "published"
	// NodeEventReceived: a copy of Msg came from Peer, Hop links from its
	// origin; Dup for a copy after the first.
	NodeEventReceived = "received"
	// NodeEventRequest: a request of the node ended after Latency, sent
	// to Peer (-1 if SelectBest found none) picked by Strategy; Cause is
	// empty on success, else as RequestResult.Errors names it.
	NodeEventRequest = "request"
	// NodeEventBulk: a bulk transfer of Bytes ended after Latency; Cause
	// "failed" if the receiver did not acknowledge it all.
	NodeEventBulk = "bulk"
	// NodeEventSendFailed: a copy of gossip message Msg sent to Peer was
	// not acknowledged (Cause as RequestResult.Errors names errors).
	// Copies that arrived are not logged: Received says so at the other
	// end.
	NodeEventSendFailed = "send_failed"
)

// NodeEvent is one line of a node's log. Peer is the remote node's index
// from NodeConfig.Peers, -1 if none or unknown.
type NodeEvent struct {
	At       Duration `json:"at"`
	Kind     string   `json:"kind"`
	Peer     int      `json:"peer"`
	Msg      uint64   `json:"msg,omitempty"`
	Hop      int      `json:"hop,omitempty"`
	Dup      bool     `json:"dup,omitempty"`
	Strategy string   `json:"strategy,omitempty"`
	Latency  Duration `json:"latency,omitempty"`
	Cause    string   `json:"cause,omitempty"`
	Bytes    int64    `json:"bytes,omitempty"`
	Dir      string   `json:"dir,omitempty"`
}

// ProcessStats describe a node's process: live heap after a GC,
// goroutine stacks and count, peak resident memory, CPU time (user and
// system) since the process started. Zero where the platform cannot
// tell.
type ProcessStats struct {
	Heap       int64    `json:"heap"`
	Stacks     int64    `json:"stacks"`
	Goroutines int      `json:"goroutines"`
	MaxRSS     int64    `json:"max_rss"`
	CPU        Duration `json:"cpu"`
}

// NodeStats are the figures of the manager's Statistics worth keeping
// from a run.
type NodeStats struct {
	// LinksOpened: inbound, outbound; LinksClosed by reason.
	LinksOpened [2]uint64         `json:"links_opened"`
	LinksClosed map[string]uint64 `json:"links_closed,omitempty"`
	Dials       uint64            `json:"dials"`
	DialErrors  map[string]uint64 `json:"dial_errors,omitempty"`
	// CircuitsOpened counts circuit breakers that opened.
	CircuitsOpened uint64 `json:"circuits_opened"`
	HealthChecks   uint64 `json:"health_checks"`
	HealthFailures uint64 `json:"health_failures"`
	StreamsRefused uint64 `json:"streams_refused"`
	BytesIn        uint64 `json:"bytes_in"`
	BytesOut       uint64 `json:"bytes_out"`
	// HandshakeP50 and HandshakeP99 are over the links opened.
	HandshakeP50 Duration `json:"handshake_p50"`
	HandshakeP99 Duration `json:"handshake_p99"`
}

// NodeOptions are RunNode's hooks.
type NodeOptions struct {
	// Clock is the node's time source (clock.Real() if nil).
	Clock clock.Clock
	// Log, if set, receives a line per step (listening, dialing,
	// stopping): peersim node's stderr.
	Log io.Writer
	// Ready, if set, is called once the node listens, with the address
	// it accepts links on and the metrics' (empty without metrics).
	Ready func(listen, metrics string)
}

// nodeShutdownGrace bounds the node's graceful shutdown at the end: the
// streams in flight get that long to finish.
const nodeShutdownGrace = 5 * time.Second

// RunNode runs one node over TCP and TLS 1.3 as cfg says, in real time:
// a peerlink ConnectionManager listening on cfg.Listen, dialing its
// Dial peers at cfg.Start, running the workload with an Agent until
// cfg.Start + cfg.Duration or until ctx ends (a signal), serving its
// metrics meanwhile; then it shuts the manager down and returns what
// the node recorded. Its error is about setting up (a bad key file, an
// address in use: errors.Is(err, syscall.EADDRINUSE)); a run stopped by
// ctx returns its results so far and no error.
func RunNode(ctx context.Context, cfg NodeConfig, opts NodeOptions) (*NodeResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real()
	}
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", a...)
		}
	}
	id, err := nodeIdentity(cfg)
	if err != nil {
		return nil, err
	}
	pc := peerlink.DefaultConfig()
	pc.Identity = id
	pc.Network = cmpOr(cfg.Network, DefaultNodeNetwork)
	for _, s := range cfg.LimitExempt {
		pc.LimitExempt = append(pc.LimitExempt, netip.MustParsePrefix(s)) // validated
	}
	w := cfg.workload()
	w.configure("", &pc)
	m, err := peerlink.New(pc)
	if err != nil {
		return nil, fmt.Errorf("simulation: node %d: %w", cfg.Node, err)
	}
	nl := newNodeLog(cfg, clk)
	// Subscribed before it listens or dials, so that the log misses no
	// link.
	sub := m.Subscribe(32 + 4*len(cfg.Peers))
	var collector sync.WaitGroup
	collector.Go(func() { nl.collect(sub) })
	stopManager := func() {
		_ = m.Close()
		collector.Wait()
	}
	var agent *Agent
	if w != nil {
		agent, err = NewAgent(m, AgentConfig{
			Node: cfg.Node, Incarnation: 1, Seed: agentSeed(cfg.Seed, cfg.Node, 1),
			Workload: w, Begin: cfg.Start, Duration: cfg.Duration.D(), Clock: clk, Observer: nl,
		})
		if err != nil {
			stopManager()
			return nil, fmt.Errorf("simulation: node %d: %w", cfg.Node, err)
		}
	}
	if err := m.Listen(cfg.Listen); err != nil {
		stopManager()
		return nil, fmt.Errorf("simulation: node %d: %w", cfg.Node, err)
	}
	metricsAddr, stopMetrics, err := serveMetrics(cfg.Metrics, m)
	if err != nil {
		stopManager()
		return nil, fmt.Errorf("simulation: node %d: metrics: %w", cfg.Node, err)
	}
	listenAddr := m.Addrs()[0]
	logf("node %d (%s) listening on %s, network %q", cfg.Node, id.ID().ShortString(), listenAddr, pc.Network)
	if metricsAddr != "" {
		logf("node %d: metrics on http://%s/metrics", cfg.Node, metricsAddr)
	}
	if opts.Ready != nil {
		opts.Ready(listenAddr, metricsAddr)
	}
	if agent != nil {
		agent.Start() // its loops wait for Start themselves
	}

	if sleepUntil(ctx, clk, cfg.Start) {
		for _, p := range cfg.Peers {
			if !p.Dial {
				continue
			}
			if err := m.AddPersistentPeer(peer.AddrInfo{ID: p.ID, Addrs: p.Addrs}); err != nil {
				logf("node %d: peer %d: %v", cfg.Node, p.Node, err)
			}
		}
		sleepUntil(ctx, clk, cfg.Start.Add(cfg.Duration.D()))
	}
	res := &NodeResult{Node: cfg.Node, ID: id.ID(), Start: cfg.Start, Duration: cfg.Duration, Ended: Duration(clk.Now().Sub(cfg.Start))}
	logf("node %d: stopping at %v", cfg.Node, res.Ended)
	// Measured while the node still runs: after the shutdown its
	// goroutines and buffers are gone.
	heap, stacks := memInUse()
	res.Process = ProcessStats{Heap: int64(heap), Stacks: int64(stacks), Goroutines: runtime.NumGoroutine()}
	res.Stats = nodeStats(m.Statistics())

	if agent != nil {
		agent.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), nodeShutdownGrace)
	err = m.Shutdown(sctx)
	cancel()
	if err != nil && !errors.Is(err, peerlink.ErrClosed) {
		logf("node %d: shutdown: %v", cfg.Node, err)
	}
	stopManager()
	stopMetrics()
	res.Process.MaxRSS, res.Process.CPU = processMaxRSS(), Duration(processCPU())
	nl.mu.Lock()
	res.Events, res.DroppedEvents, res.LostEvents = nl.events, nl.dropped, nl.lost
	nl.mu.Unlock()
	return res, nil
}

// nodeIdentity is the node's key: its file's, or the seed's.
func nodeIdentity(cfg NodeConfig) (*peer.Identity, error) {
	if cfg.KeyFile != "" {
		id, err := peer.LoadOrCreateIdentity(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: key_file: %w", ErrNodeConfig, err)
		}
		return id, nil
	}
	return NodeIdentity(cfg.Seed, cfg.Node)
}

// agentSeed is the seed of node i's agent in its incarnation inc.
func agentSeed(seed uint64, i, inc int) uint64 {
	return mix(seed ^ mix(streamAgent<<56^uint64(i)<<20^uint64(inc)))
}

// sleepUntil waits for t on clk; false if ctx ended first.
func sleepUntil(ctx context.Context, clk clock.Clock, t time.Time) bool {
	d := t.Sub(clk.Now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := clk.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// serveMetrics serves m's metrics at /metrics on addr ("" for none),
// and returns the address it got and how to stop it.
func serveMetrics(addr string, m *peerlink.ConnectionManager) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	return ln.Addr().String(), func() {
		_ = srv.Close()
		wg.Wait()
	}, nil
}

// nodeStats keeps what a run's results need of st.
func nodeStats(st peerlink.Statistics) NodeStats {
	return NodeStats{
		LinksOpened: st.Connections.Opened, LinksClosed: st.Connections.Closed,
		Dials: st.Dials.Attempts, DialErrors: st.Dials.Errors,
		CircuitsOpened: st.Circuits.Transitions["open"],
		HealthChecks:   st.Health.Checks, HealthFailures: st.Health.Failures,
		StreamsRefused: st.Streams.Refused,
		BytesIn:        st.BytesIn, BytesOut: st.BytesOut,
		HandshakeP50: Duration(st.Handshake.P50), HandshakeP99: Duration(st.Handshake.P99),
	}
}

// nodeLog is a node's bounded log: the Agent's Observer and the
// collector of its manager's connection events.
type nodeLog struct {
	clk   clock.Clock
	start time.Time
	index map[peer.ID]int
	max   int

	mu      sync.Mutex
	events  []NodeEvent
	dropped uint64
	lost    uint64
}

func newNodeLog(cfg NodeConfig, clk clock.Clock) *nodeLog {
	l := &nodeLog{clk: clk, start: cfg.Start, index: make(map[peer.ID]int, len(cfg.Peers)), max: cmpOr(cfg.MaxEvents, DefaultMaxEvents)}
	for _, p := range cfg.Peers {
		l.index[p.ID] = p.Node
	}
	return l
}

func (l *nodeLog) peer(id peer.ID) int {
	if i, ok := l.index[id]; ok {
		return i
	}
	return -1
}

// add logs e, at time at (zero: now).
func (l *nodeLog) add(e NodeEvent, at time.Time) {
	if at.IsZero() {
		at = l.clk.Now()
	}
	e.At = Duration(at.Sub(l.start))
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) >= l.max {
		l.dropped++
		return
	}
	l.events = append(l.events, e)
}

// collect logs the manager's connection events until it closes sub.
func (l *nodeLog) collect(sub *peerlink.Subscription) {
	for ev := range sub.C {
		e := NodeEvent{Peer: l.peer(ev.Peer), Dir: ev.Direction.String()}
		switch ev.Type {
		case peerlink.EventConnected:
			e.Kind = NodeEventConnected
		case peerlink.EventDisconnected:
			e.Kind, e.Cause = NodeEventDisconnected, ev.Reason.String()
		default:
			continue
		}
		l.add(e, ev.Time)
	}
	l.mu.Lock()
	l.lost += sub.Dropped()
	l.mu.Unlock()
}

func (l *nodeLog) Published(_ int, id uint64) {
	l.add(NodeEvent{Kind: NodeEventPublished, Peer: -1, Msg: id}, time.Time{})
}

func (l *nodeLog) Received(_ int, id uint64, from peer.ID, hop int, first bool) {
	l.add(NodeEvent{Kind: NodeEventReceived, Peer: l.peer(from), Msg: id, Hop: hop, Dup: !first}, time.Time{})
}

func (l *nodeLog) Request(_ int, r RequestOutcome) {
	e := NodeEvent{Kind: NodeEventRequest, Peer: -1, Strategy: r.Strategy, Latency: Duration(r.Latency), Cause: errorCause(r.Err)}
	if !r.Peer.IsZero() {
		e.Peer = l.peer(r.Peer)
	}
	l.add(e, time.Time{})
}

func (l *nodeLog) Bulk(_ int, bytes int64, took time.Duration, err error) {
	e := NodeEvent{Kind: NodeEventBulk, Peer: -1, Bytes: bytes, Latency: Duration(took)}
	if err != nil {
		e.Cause = "failed"
	}
	l.add(e, time.Time{})
}

func (l *nodeLog) Sent(_ int, id uint64, to peer.ID, err error) {
	if err != nil {
		l.add(NodeEvent{Kind: NodeEventSendFailed, Peer: l.peer(to), Msg: id, Cause: errorCause(err)}, time.Time{})
	}
}

func (l *nodeLog) FloodOpened(int, peer.ID) {} // no attacks here (NodeConfig.Validate)
