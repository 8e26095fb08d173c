package simulation

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"runtime"
	"slices"
	"time"

	"github.com/peerlink/peerlink"
)

// Kind says what a trace Record is: a fault the harness applied, or a
// connection event a node's manager published.
type Kind uint8

// Record kinds; faults sort before events of the same instant.
const (
	KindCrash Kind = iota + 1
	KindRestart
	KindReset
	KindBlackHole
	KindDegrade
	KindPartition
	KindHeal
	KindPowerOff
	KindConnected
	KindDisconnected
)

var kindNames = [...]string{
	KindCrash: "crash", KindRestart: "restart", KindReset: "reset", KindBlackHole: "blackhole",
	KindDegrade: "degrade", KindPartition: "partition", KindHeal: "heal", KindPowerOff: "poweroff",
	KindConnected: "connected", KindDisconnected: "disconnected",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText spells the kind out in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k Kind) isFault() bool { return k < KindConnected }

// Record is one line of a run's trace.
type Record struct {
	// At is the virtual time since Start.
	At   time.Duration `json:"at"`
	Kind Kind          `json:"kind"`
	// Node is the node the event happened at, or the fault's first node
	// (-1 for a heal); Inc is that node's incarnation (1 for its first
	// start, one more per restart).
	Node int `json:"node"`
	Inc  int `json:"inc,omitempty"`
	// Peer is the remote node of an event, the second node of a pairwise
	// fault, else -1.
	Peer   int                       `json:"peer"`
	Reason peerlink.DisconnectReason `json:"reason,omitempty"`
	// Dir is the link's transport.Direction (events only).
	Dir uint8 `json:"dir,omitempty"`

	act *action // the scheduled fault, if any (for partitions' groups)
	seq uint64  // arrival order in the trace (not hashed: see compareRecords)
}

// compareRecords orders a trace by content, not by the order goroutines
// happened to append it in, so that it repeats: by time, faults first,
// then by node and incarnation, then by peer. Records equal so far keep
// their arrival order: they are one node's events about one peer at one
// instant (a replaced link's EventDisconnected, then its successor's
// EventConnected), which the manager publishes in causal order, or
// faults at one instant, which the harness applies one after another.
func compareRecords(a, b Record) int {
	if c := cmp.Compare(a.At, b.At); c != 0 {
		return c
	}
	if af, bf := a.Kind.isFault(), b.Kind.isFault(); af != bf {
		if af {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Inc, b.Inc), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.seq, b.seq))
}

// TraceHash returns FNV-64a over the records, which must be sorted (as
// Result.Trace is): the run's fingerprint.
func TraceHash(trace []Record) uint64 {
	h := fnv.New64a()
	var b [8 * 7]byte
	for _, r := range trace {
		binary.LittleEndian.PutUint64(b[0:], uint64(r.At))
		binary.LittleEndian.PutUint64(b[8:], uint64(r.Kind))
		binary.LittleEndian.PutUint64(b[16:], uint64(int64(r.Node)))
		binary.LittleEndian.PutUint64(b[24:], uint64(int64(r.Inc)))
		binary.LittleEndian.PutUint64(b[32:], uint64(int64(r.Peer)))
		binary.LittleEndian.PutUint64(b[40:], uint64(r.Reason))
		binary.LittleEndian.PutUint64(b[48:], uint64(r.Dir))
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// Sample is the network's connectivity at one virtual instant, as the
// nodes' own events tell it.
type Sample struct {
	At Duration `json:"at"`
	// NodesUp counts the nodes running; EdgesUp the topology's edges
	// with a link that both ends report connected.
	NodesUp int `json:"nodes_up"`
	EdgesUp int `json:"edges_up"`
	// MeanPeers and MinPeers are over the nodes up: the peers each
	// reports connected.
	MeanPeers float64 `json:"mean_peers"`
	MinPeers  int     `json:"min_peers"`
}

// Reconnect is how long one topology edge took to have a fresh link
// (both ends connected after the fault) again.
type Reconnect struct {
	Cause string   `json:"cause"` // "restart", "heal" or "reset"
	Edge  [2]int   `json:"edge"`
	At    Duration `json:"at"` // the fault's end: the restart, heal or reset
	After Duration `json:"after"`
}

// Detection is how long a node took to declare a silenced link dead (its
// EventDisconnected).
type Detection struct {
	Cause string   `json:"cause"` // "blackhole", "partition" or "poweroff"
	Node  int      `json:"node"`
	Peer  int      `json:"peer"`
	At    Duration `json:"at"`
	After Duration `json:"after"`
}

// Summary condenses durations. Missing counts the cases that never
// completed by the end of the run, with every node involved still up.
type Summary struct {
	Count   int      `json:"count"`
	Missing int      `json:"missing"`
	Mean    Duration `json:"mean"`
	P50     Duration `json:"p50"`
	P90     Duration `json:"p90"`
	P99     Duration `json:"p99"`
	Max     Duration `json:"max"`
}

func summarize(ds []time.Duration, missing int) Summary {
	s := Summary{Count: len(ds), Missing: missing}
	if len(ds) == 0 {
		return s
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	q := func(p float64) Duration { return Duration(ds[min(len(ds)-1, int(p*float64(len(ds))))]) }
	s.Mean = Duration(sum / time.Duration(len(ds)))
	s.P50, s.P90, s.P99, s.Max = q(0.5), q(0.9), q(0.99), Duration(ds[len(ds)-1])
	return s
}

// Result is what a run measured.
type Result struct {
	Scenario string `json:"scenario,omitempty"`
	// Mode is "" for a simulated run, ModeLocal for real node processes
	// over TCP (Gather): Duration is then wall time, TraceHash does not
	// repeat, and no true latency is known (Selection's best picks and
	// regrets are not measured, Scores is empty).
	Mode     string   `json:"mode,omitempty"`
	Seed     uint64   `json:"seed"`
	Nodes    int      `json:"nodes"`
	Edges    int      `json:"edges"`
	Duration Duration `json:"duration"`
	// TraceHash fingerprints the trace (TraceHash), as 16 hex digits;
	// two runs of one scenario in a synctest bubble with Options.Settle
	// print the same.
	TraceHash string `json:"trace_hash"`
	TraceLen  int    `json:"trace_len"`
	// DroppedEvents counts events a node's subscription lost; the
	// measures are wrong if it is not 0.
	DroppedEvents uint64 `json:"dropped_events"`
	// FullyConnectedAt is when every edge of the topology first had a
	// link, if it ever did.
	FullyConnected   bool     `json:"fully_connected"`
	FullyConnectedAt Duration `json:"fully_connected_at"`

	Samples []Sample `json:"samples"`

	Reconnects            []Reconnect `json:"reconnects,omitempty"`
	ReconnectAfterRestart Summary     `json:"reconnect_after_restart"`
	ReconnectAfterHeal    Summary     `json:"reconnect_after_heal"`
	ReconnectAfterReset   Summary     `json:"reconnect_after_reset"`
	Detections            []Detection `json:"detections,omitempty"`
	DeadLinkDetection     Summary     `json:"dead_link_detection"`
	Crashes               int         `json:"crashes"` // power-offs included
	Restarts              int         `json:"restarts"`

	// HeapPerNode is the live heap (after a GC) at the end of the run,
	// less what was live before the nodes started, over the nodes;
	// StackPerNode and GoroutinesPerNode likewise for the goroutines'
	// stacks and number. All include the network's shaping goroutines
	// and buffers, and the harness's (one collector per node).
	HeapPerNode       int64   `json:"heap_per_node"`
	StackPerNode      int64   `json:"stack_per_node"`
	GoroutinesPerNode float64 `json:"goroutines_per_node"`
	// CPUPerNode is the CPU time (user and system) the process spent from
	// the nodes' start to the result, over the nodes: real CPU, though
	// the run's clock is virtual; the harness's and the network's share
	// included. 0 where the platform cannot tell.
	CPUPerNode Duration `json:"cpu_per_node"`
	// RSSPerNode is the mean peak resident memory of the nodes' processes
	// (ModeLocal: a simulated run's nodes share one process).
	RSSPerNode int64 `json:"rss_per_node,omitempty"`

	// BreakerOpenings counts circuits that opened, at any node; Trims
	// the links closed by trimming (as each end reported it), of which
	// TrimmedSquatters a squatter's.
	BreakerOpenings  int64 `json:"breaker_openings"`
	Trims            int64 `json:"trims"`
	TrimmedSquatters int64 `json:"trimmed_squatters"`

	// The workload's measures (see WorkloadSpec), nil for a part it does
	// not run. Selection compares the request strategies; Scores is each
	// node's score of its peers at the end against their true latency.
	Gossip          *GossipResult      `json:"gossip,omitempty"`
	Requests        *RequestResult     `json:"requests,omitempty"`
	Selection       []SelectionQuality `json:"selection,omitempty"`
	Scores          []ScorePoint       `json:"scores,omitempty"`
	Bulk            *BulkResult        `json:"bulk,omitempty"`
	Flood           *FloodResult       `json:"flood,omitempty"`
	WorkloadSamples []WorkloadSample   `json:"workload_samples,omitempty"`

	trace []Record
}

// Trace returns the run's trace, sorted.
func (r *Result) Trace() []Record { return r.trace }

// result measures the run so far.
func (s *Sim) result() *Result {
	heap, stacks := memInUse()
	goroutines := runtime.NumGoroutine()
	s.mu.Lock()
	trace := slices.Clone(s.trace)
	s.mu.Unlock()
	slices.SortFunc(trace, compareRecords)
	res := &Result{
		Scenario:          s.sc.Name,
		Seed:              s.sc.Seed,
		Nodes:             s.sc.Nodes,
		Edges:             len(s.graph.Edges()),
		Duration:          s.sc.Duration,
		TraceHash:         fmt.Sprintf("%016x", TraceHash(trace)),
		TraceLen:          len(trace),
		DroppedEvents:     s.dropped.Load(),
		HeapPerNode:       (int64(heap) - int64(s.heap0)) / int64(s.sc.Nodes),
		StackPerNode:      (int64(stacks) - int64(s.stacks0)) / int64(s.sc.Nodes),
		GoroutinesPerNode: float64(goroutines-s.goroutines0) / float64(s.sc.Nodes),
		CPUPerNode:        Duration((processCPU() - s.cpu0) / time.Duration(s.sc.Nodes)),
		trace:             trace,
	}
	newReplay(s.graph, res).run(trace, s.sc.SampleEvery.D(), s.sc.Duration.D())
	res.BreakerOpenings, res.Trims, res.TrimmedSquatters = s.breakerOpenings.Load(), s.trims.Load(), s.trimmedSquat.Load()
	if s.obs != nil {
		s.obs.fill(res)
		res.Scores = s.scores()
	}
	return res
}

// replay rebuilds, from the sorted trace alone, what each node saw, and
// measures the run from it.
type replay struct {
	g       Graph
	res     *Result
	up      []bool
	inc     []int
	view    []map[int]time.Duration // node → peer → connected since
	edgeUp  map[pairKey]bool
	edgesUp int
	nodesUp int
	groups  [][]int // the last partition's

	reconnects map[pairKey]reconnectWatch
	detections map[dirPair]detectionWatch

	restartDelays, healDelays, resetDelays, detectDelays []time.Duration
}

type reconnectWatch struct {
	cause string
	since time.Duration
}

type detectionWatch = reconnectWatch

func newReplay(g Graph, res *Result) *replay {
	r := &replay{
		g: g, res: res,
		up: make([]bool, g.N), inc: make([]int, g.N), view: make([]map[int]time.Duration, g.N),
		edgeUp: make(map[pairKey]bool), nodesUp: g.N,
		reconnects: make(map[pairKey]reconnectWatch), detections: make(map[dirPair]detectionWatch),
	}
	for i := range g.N {
		r.up[i], r.inc[i], r.view[i] = true, 1, make(map[int]time.Duration)
	}
	return r
}

func (r *replay) run(trace []Record, every, end time.Duration) {
	next := time.Duration(0)
	total := len(r.g.Edges())
	for _, rec := range trace {
		for next <= end && next < rec.At {
			r.sample(next)
			next += every
		}
		r.apply(rec)
		if !r.res.FullyConnected && r.edgesUp == total && r.nodesUp == r.g.N {
			r.res.FullyConnected, r.res.FullyConnectedAt = true, Duration(rec.At)
		}
	}
	for ; next <= end; next += every {
		r.sample(next)
	}
	missing := map[string]int{}
	for k, w := range r.reconnects {
		if r.up[k.a] && r.up[k.b] {
			missing[w.cause]++
		}
	}
	detectMissing := 0
	for k := range r.detections {
		if r.up[k.from] {
			detectMissing++
		}
	}
	r.res.ReconnectAfterRestart = summarize(r.restartDelays, missing["restart"])
	r.res.ReconnectAfterHeal = summarize(r.healDelays, missing["heal"])
	r.res.ReconnectAfterReset = summarize(r.resetDelays, missing["reset"])
	r.res.DeadLinkDetection = summarize(r.detectDelays, detectMissing)
}

func (r *replay) sample(at time.Duration) {
	s := Sample{At: Duration(at), NodesUp: r.nodesUp, EdgesUp: r.edgesUp, MinPeers: -1}
	sum := 0
	for i, v := range r.view {
		if !r.up[i] {
			continue
		}
		sum += len(v)
		if s.MinPeers < 0 || len(v) < s.MinPeers {
			s.MinPeers = len(v)
		}
	}
	if r.nodesUp > 0 {
		s.MeanPeers = float64(sum) / float64(r.nodesUp)
	}
	s.MinPeers = max(s.MinPeers, 0)
	r.res.Samples = append(r.res.Samples, s)
}

func (r *replay) apply(rec Record) {
	i, j := rec.Node, rec.Peer
	switch rec.Kind {
	case KindConnected, KindDisconnected:
		if j < 0 || !r.up[i] || rec.Inc != r.inc[i] {
			return // an old incarnation's last words, or a stranger
		}
		if rec.Kind == KindConnected {
			r.view[i][j] = rec.At
		} else {
			delete(r.view[i], j)
			if w, ok := r.detections[dirPair{i, j}]; ok {
				delete(r.detections, dirPair{i, j})
				d := rec.At - w.since
				r.detectDelays = append(r.detectDelays, d)
				r.res.Detections = append(r.res.Detections, Detection{w.cause, i, j, Duration(w.since), Duration(d)})
			}
		}
		r.update(i, j, rec.At)
	case KindCrash, KindPowerOff:
		r.res.Crashes++
		// After a power-off, each peer still linked must find out.
		var silent []int
		if rec.Kind == KindPowerOff {
			for j := range r.view[i] {
				if _, ok := r.view[j][i]; ok && r.up[j] {
					silent = append(silent, j)
				}
			}
		}
		r.up[i] = false
		r.nodesUp--
		peers := r.view[i]
		r.view[i] = make(map[int]time.Duration)
		for j := range peers {
			r.update(i, j, rec.At)
		}
		for k := range r.detections {
			if k.from == i || k.to == i {
				delete(r.detections, k)
			}
		}
		for _, j := range r.g.Adj[i] {
			delete(r.reconnects, keyOf(i, j))
		}
		for _, j := range silent {
			r.detections[dirPair{j, i}] = detectionWatch{"poweroff", rec.At}
		}
	case KindRestart:
		r.res.Restarts++
		r.up[i], r.inc[i] = true, rec.Inc
		r.nodesUp++
		for _, j := range r.g.Adj[i] {
			if r.up[j] {
				r.reconnects[keyOf(i, j)] = reconnectWatch{"restart", rec.At}
			}
		}
	case KindReset:
		if r.g.hasEdge(i, j) {
			r.reconnects[keyOf(i, j)] = reconnectWatch{"reset", rec.At}
		}
	case KindBlackHole:
		r.watchDetection("blackhole", i, j, rec.At)
	case KindPartition:
		r.groups = rec.act.groups
		for _, e := range r.crossing() {
			r.watchDetection("partition", e[0], e[1], rec.At)
		}
	case KindHeal:
		for _, e := range r.crossing() {
			if r.up[e[0]] && r.up[e[1]] {
				r.reconnects[keyOf(e[0], e[1])] = reconnectWatch{"heal", rec.At}
			}
		}
		r.groups = nil
	}
}

// watchDetection starts timing how long each end of edge a–b takes to
// notice it went silent, if a link was up.
func (r *replay) watchDetection(cause string, a, b int, at time.Duration) {
	if _, ok := r.view[a][b]; ok && r.up[a] {
		r.detections[dirPair{a, b}] = detectionWatch{cause, at}
	}
	if _, ok := r.view[b][a]; ok && r.up[b] {
		r.detections[dirPair{b, a}] = detectionWatch{cause, at}
	}
}

// crossing returns the topology's edges cut by the last partition.
func (r *replay) crossing() [][2]int {
	if r.groups == nil {
		return nil
	}
	group := make([]int, r.g.N)
	for i := range group {
		group[i] = len(r.groups)
	}
	for k, g := range r.groups {
		for _, i := range g {
			group[i] = k
		}
	}
	var cut [][2]int
	for _, e := range r.g.Edges() {
		if group[e[0]] != group[e[1]] {
			cut = append(cut, e)
		}
	}
	return cut
}

// update recomputes whether edge i–j is up after a change at i, and
// completes a reconnect watch on it.
func (r *replay) update(i, j int, at time.Duration) {
	if !r.g.hasEdge(i, j) {
		return
	}
	k := keyOf(i, j)
	ti, oki := r.view[i][j]
	tj, okj := r.view[j][i]
	up := oki && okj && r.up[i] && r.up[j]
	if up != r.edgeUp[k] {
		if up {
			r.edgesUp++
		} else {
			r.edgesUp--
		}
		r.edgeUp[k] = up
	}
	w, ok := r.reconnects[k]
	if !up || !ok || ti < w.since || tj < w.since {
		return
	}
	delete(r.reconnects, k)
	d := at - w.since
	r.res.Reconnects = append(r.res.Reconnects, Reconnect{w.cause, [2]int{k.a, k.b}, Duration(w.since), Duration(d)})
	switch w.cause {
	case "restart":
		r.restartDelays = append(r.restartDelays, d)
	case "heal":
		r.healDelays = append(r.healDelays, d)
	default:
		r.resetDelays = append(r.resetDelays, d)
	}
}
