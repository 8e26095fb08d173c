package simulation

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

// GossipResult measures the gossip workload.
type GossipResult struct {
	// Published counts the messages published; Counted those published
	// at least Settle before the end, over which Delivery is the share
	// that reached every node of their connected component (the nodes
	// linked to the origin, directly or not, when it published; a node
	// that went down within Settle after the publication is not counted
	// against it).
	Published int     `json:"published"`
	Counted   int     `json:"counted"`
	Complete  int     `json:"complete"`
	Delivery  float64 `json:"delivery"`
	// To50 .. To100: time from publication to reaching that share of the
	// component, over the messages that did.
	To50  Summary `json:"to_50"`
	To90  Summary `json:"to_90"`
	To99  Summary `json:"to_99"`
	To100 Summary `json:"to_100"`
	// DuplicatesPerNode counts, over the counted messages, every copy a
	// node received of a message it already had (the origin's copies
	// coming back included; a frame read whole from a gossip stream is
	// a copy received), divided by the sum over those messages of the
	// nodes they reached (the origin included): duplicates per node per
	// message.
	//
	// DuplicatesTheory is flooding's (k−2)/2 with k = Fanout + 1, the
	// links a message uses at a node (the one it came on and those it
	// leaves on: the degree on the default graph, where Fanout is degree
	// − 1): of a k-regular graph's Nk/2 edges a spanning tree uses N − 1
	// and every other edge carries at least one copy too many, (k−2)/2
	// per node (about 3 at k = 8, as measured on Ethereum's mainnet). A
	// node that forwards at once (GossipSpec.Validation 0) knows only its
	// sender has the message, so the copies of two neighbours that got
	// it at about the same time cross: every redundant edge carries it
	// both ways and the figure nears k − 2 (6 at degree 8). Validating
	// first, a node learns meanwhile which neighbours nearer the origin
	// have it and skips them, and the figure falls (4.7 with 50 ms on
	// 20–60 ms links, 1,000 nodes); neighbours that got it at about the
	// same time still cross, so it stays above (k−2)/2. RMR is the
	// relative message redundancy, copies received ÷ (nodes reached − 1)
	// − 1 (0 is optimal). SendErrors counts the copies a node sent that
	// were not written or not acknowledged in time, each also reported
	// to the balancer as a failure (not those the agent's Close cut
	// short).
	DuplicatesPerNode float64 `json:"duplicates_per_node"`
	DuplicatesTheory  float64 `json:"duplicates_theory"`
	RMR               float64 `json:"rmr"`
	SendErrors        int     `json:"send_errors"`
	// LastHop: hop count of the last node a message reached.
	LastHopMean float64 `json:"last_hop_mean"`
	LastHopMax  int     `json:"last_hop_max"`
	// DelayCDF is the distribution of the first-copy delays of every
	// node reached, over every counted message (at most 200 points).
	DelayCDF []CDFPoint `json:"delay_cdf"`
	// Messages lists the counted messages (the first 5,000).
	Messages []MessageStat `json:"messages,omitempty"`
}

// CDFPoint: Share of the values are at most At.
type CDFPoint struct {
	At    Duration `json:"at"`
	Share float64  `json:"share"`
}

// MessageStat is one gossip message's spread. To* are 0 when the share
// was not reached.
type MessageStat struct {
	ID         uint64   `json:"id"`
	Origin     int      `json:"origin"`
	At         Duration `json:"at"`
	Target     int      `json:"target"`
	Reached    int      `json:"reached"`
	Complete   bool     `json:"complete"`
	To50       Duration `json:"to_50"`
	To90       Duration `json:"to_90"`
	To99       Duration `json:"to_99"`
	To100      Duration `json:"to_100"`
	LastHop    int      `json:"last_hop"`
	Duplicates int      `json:"duplicates"`
}

// RequestResult measures the request workload.
type RequestResult struct {
	Sent int `json:"sent"`
	OK   int `json:"ok"`
	// Errors counts failures by cause: "timeout", "overloaded" (the
	// server's queue was full), "no_candidate", "stream_limit", "reset",
	// "closed", "other".
	Errors map[string]int `json:"errors,omitempty"`
	// Latency is over the successful requests.
	Latency Summary `json:"latency"`
}

// SelectionQuality judges one strategy's picks against the truth the
// harness knows: a candidate's true latency is its link's round trip
// (Network.RTT, degradations included) plus its service time.
type SelectionQuality struct {
	Strategy string `json:"strategy"`
	// Picks counts the requests whose pick was judged (SelectBest
	// succeeded, and picked an honest peer: a squatter or an attacker
	// has no service time to judge, and its refusal counts among the
	// errors); BestShare is the share whose pick had the lowest true
	// latency among the honest candidates. Regret is the pick's true
	// latency ÷ the best's (1 is perfect). The truth is taken when the
	// request ends, the pick made when it began: a degradation between
	// the two is judged as if known.
	Picks      int     `json:"picks"`
	BestShare  float64 `json:"best_share"`
	MeanRegret float64 `json:"mean_regret"`
	P90Regret  float64 `json:"p90_regret"`
	// Errors counts this strategy's failed requests; Latency is over its
	// successful ones.
	Errors  int     `json:"errors"`
	Latency Summary `json:"latency"`
	// ErrorCauses splits Errors by cause, as RequestResult.Errors.
	ErrorCauses map[string]int `json:"error_causes,omitempty"`
	// Load concentration, over the strategy's picks of honest peers:
	// BusiestShare is the share that went to the server it picked most,
	// LoadMaxMean that server's picks ÷ the mean over every honest node
	// (1: perfectly even). A strategy that sends every request to its
	// best peer queues them there once servers have a finite Concurrency.
	BusiestShare float64 `json:"busiest_share"`
	LoadMaxMean  float64 `json:"load_max_mean"`
}

// ScorePoint is one node's score of one linked peer at the end of the
// run against the link's true latency (for a scatter plot).
type ScorePoint struct {
	Node  int      `json:"node"`
	Peer  int      `json:"peer"`
	Score float64  `json:"score"`
	True  Duration `json:"true_latency"`
	// Degraded: a fault slowed the link, or the peer serves slowly.
	Degraded bool `json:"degraded"`
}

// BulkResult measures the bulk transfers.
type BulkResult struct {
	Transfers int   `json:"transfers"`
	Failed    int   `json:"failed"`
	Bytes     int64 `json:"bytes"`
	// Throughput is the bytes acknowledged per second of transfer, over
	// all senders (each sends one transfer at a time).
	Throughput float64  `json:"throughput"`
	Mean       Duration `json:"mean_transfer"`
}

// FloodResult measures a stream-flood attack and its victims.
type FloodResult struct {
	// Opened counts the streams the attackers opened.
	Opened int64 `json:"opened"`
	// VictimMaxStreams is the most streams one victim held open on its
	// link to an attacker at a sample; VictimLimit that link's limit.
	VictimMaxStreams int `json:"victim_max_streams"`
	VictimLimit      int `json:"victim_limit"`
	// VictimRequests and VictimRequestsOK count the honest requests sent
	// to the attackers' neighbours while the attack ran.
	VictimRequests   int `json:"victim_requests"`
	VictimRequestsOK int `json:"victim_requests_ok"`
}

// WorkloadSample is the workload over one SampleEvery interval from At.
type WorkloadSample struct {
	At        Duration `json:"at"`
	Published int      `json:"published"`
	// Delivery is the share of the counted messages published in the
	// interval that were complete (-1 if none).
	Delivery      float64  `json:"delivery"`
	Requests      int      `json:"requests"`
	RequestErrors int      `json:"request_errors"`
	RequestP50    Duration `json:"request_p50"`
}

// Progress is a running simulation's state, for a progress line.
type Progress struct {
	// Virtual is the run's time since Start (virtual in a bubble: the
	// caller measures wall time itself).
	Virtual   time.Duration
	Published int
	// Delivery: copies received by the nodes each message targets over
	// those targeted, for every message so far (in flight included).
	Delivery      float64
	Requests      int
	RequestErrors int
	NodesUp       int
}

// world is what the observer reads of the run beyond the agents'
// reports: a running Sim, or the nodes' logs replayed (gather.go).
type world interface {
	// Elapsed is the time since the run's start, now.
	Elapsed() time.Duration
	Node(id peer.ID) (int, bool)
	role(i int) string
	isVictim(i int) bool
	// component marks in target the honest nodes up that are linked to
	// origin now, directly or not, as their managers report the links.
	component(origin int, target []uint64)
	// truth is the true latency of a request from i to j, false where
	// nothing knows it (real networks).
	truth(i, j int) (time.Duration, bool)
}

// observer gathers what the agents report; it implements Observer.
type observer struct {
	s     *Sim // nil when fed from logs: only progress and sampleFlood use it
	w     world
	sc    Scenario
	mu    sync.Mutex
	msgs  map[uint64]*msgTrack
	order []uint64 // publication order
	reqs  []reqRec
	bulk  []bulkRec
	downs [][]time.Duration // per node: when it went down

	floodOpened      int64
	victimMaxStreams int
	victimLimit      int
	reachedSum       int
	targetSum        int
	gossipSendErrors int
}

type msgTrack struct {
	origin   int
	at       time.Duration
	target   []uint64 // bitset of the nodes in the origin's component
	nTarget  int
	arrivals []arrival // first copies at target nodes, the origin's first
	copies   int       // all copies received, duplicates included
	dups     int
}

type arrival struct {
	node int32
	hop  int32
	at   time.Duration
}

type reqRec struct {
	at       time.Duration
	strategy string
	latency  time.Duration
	cause    string // "" for a success
	judged   bool
	best     bool
	regret   float64
	victim   bool
	server   int // the honest node picked, -1 if none
}

type bulkRec struct {
	took  time.Duration
	bytes int64
	err   bool
}

func newObserver(s *Sim) *observer {
	o := newWorldObserver(s, s.sc)
	o.s = s
	return o
}

func newWorldObserver(w world, sc Scenario) *observer {
	return &observer{w: w, sc: sc, msgs: make(map[uint64]*msgTrack), downs: make([][]time.Duration, sc.Nodes)}
}

func (o *observer) nodeDown(i int, at time.Duration) {
	o.mu.Lock()
	o.downs[i] = append(o.downs[i], at)
	o.mu.Unlock()
}

// Published computes the message's target: the origin's component over
// the links up now, as the managers report them.
func (o *observer) Published(node int, id uint64) {
	at := o.w.Elapsed()
	n := o.sc.Nodes
	t := &msgTrack{origin: node, at: at, target: make([]uint64, (n+63)/64)}
	o.w.component(node, t.target)
	for _, w := range t.target {
		t.nTarget += popcount(w)
	}
	t.arrivals = append(t.arrivals, arrival{node: int32(node), at: at})
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs[id] = t
	o.order = append(o.order, id)
	o.targetSum += t.nTarget
	o.reachedSum++
}

func popcount(w uint64) int {
	c := 0
	for ; w != 0; w &= w - 1 {
		c++
	}
	return c
}

func (o *observer) Received(node int, id uint64, _ peer.ID, hop int, first bool) {
	at := o.w.Elapsed()
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.msgs[id]
	if t == nil {
		return
	}
	t.copies++
	if !first {
		t.dups++
		return
	}
	if t.target[node/64]&(1<<(node%64)) != 0 {
		t.arrivals = append(t.arrivals, arrival{node: int32(node), hop: int32(hop), at: at})
		o.reachedSum++
	}
}

func (o *observer) Sent(_ int, _ uint64, _ peer.ID, err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	o.gossipSendErrors++
	o.mu.Unlock()
}

func (o *observer) Request(node int, r RequestOutcome) {
	at := o.w.Elapsed()
	rec := reqRec{at: at, strategy: r.Strategy, latency: r.Latency, cause: errorCause(r.Err), server: -1}
	if !r.Peer.IsZero() {
		// A pick of a peer that serves nothing (a squatter) has no true
		// latency to judge: it shows among the errors.
		if j, ok := o.w.Node(r.Peer); ok && o.w.role(j) == "" {
			rec.server = j
			rec.victim = o.w.isVictim(j)
			rec.judged, rec.best, rec.regret = o.judge(node, j, r.Candidates)
		}
	}
	o.mu.Lock()
	o.reqs = append(o.reqs, rec)
	o.mu.Unlock()
}

// judge compares the pick with the truly best candidate.
func (o *observer) judge(node, picked int, cands []peer.ID) (judged, best bool, regret float64) {
	mine, known := o.w.truth(node, picked)
	if !known {
		return false, false, 0
	}
	bestLat := mine
	for _, c := range cands {
		if j, ok := o.w.Node(c); ok && o.w.role(j) == "" {
			if l, ok := o.w.truth(node, j); ok {
				bestLat = min(bestLat, l)
			}
		}
	}
	if bestLat <= 0 {
		return false, false, 0
	}
	return true, mine == bestLat, float64(mine) / float64(bestLat)
}

func (o *observer) Bulk(_ int, bytes int64, took time.Duration, err error) {
	o.mu.Lock()
	o.bulk = append(o.bulk, bulkRec{took: took, bytes: bytes, err: err != nil})
	o.mu.Unlock()
}

func (o *observer) FloodOpened(int, peer.ID) {
	o.mu.Lock()
	o.floodOpened++
	o.mu.Unlock()
}

// errorCause names what an agent's request failed of ("" for nil).
func errorCause(err error) string {
	switch {
	case err == nil:
		return ""
	case isTimeoutErr(err):
		return "timeout"
	case errors.Is(err, ErrOverloaded):
		return "overloaded"
	case errors.Is(err, balancer.ErrNoCandidate):
		return "no_candidate"
	case errors.Is(err, mux.ErrStreamLimit):
		return "stream_limit"
	case errors.Is(err, mux.ErrStreamReset):
		return "reset"
	case errors.Is(err, peerlink.ErrClosed), errors.Is(err, ErrClosed), errors.Is(err, context.Canceled),
		errors.Is(err, mux.ErrSessionClosed), errors.Is(err, peerlink.ErrNotConnected):
		return "closed"
	}
	return "other"
}

// progress returns the run's state now.
func (o *observer) progress() Progress {
	p := Progress{Virtual: o.s.Elapsed(), NodesUp: o.s.nodesUp()}
	o.mu.Lock()
	defer o.mu.Unlock()
	p.Published = len(o.order)
	if o.targetSum > 0 {
		p.Delivery = float64(o.reachedSum) / float64(o.targetSum)
	}
	p.Requests = len(o.reqs)
	for _, r := range o.reqs {
		if r.cause != "" {
			p.RequestErrors++
		}
	}
	return p
}

// sampleFlood records the victims' streams on their links to the
// attackers.
func (o *observer) sampleFlood() {
	fl := o.s.sc.Workload.Flood
	for _, a := range fl.Nodes {
		for _, v := range o.s.graph.Adj[a] {
			m := o.s.Manager(v)
			if m == nil {
				continue
			}
			st, err := m.StreamStats(o.s.ID(a))
			if err != nil {
				continue
			}
			open := 0
			for _, n := range st.ByPriority {
				open += n
			}
			o.mu.Lock()
			o.victimMaxStreams = max(o.victimMaxStreams, open)
			o.victimLimit = max(o.victimLimit, st.Limit)
			o.mu.Unlock()
		}
	}
}

// fill adds the workload's measures to res.
func (o *observer) fill(res *Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.sc.Workload
	end, every := o.sc.Duration.D(), o.sc.SampleEvery.D()
	buckets := int(end/every) + 1
	res.WorkloadSamples = make([]WorkloadSample, buckets)
	for k := range res.WorkloadSamples {
		res.WorkloadSamples[k] = WorkloadSample{At: Duration(time.Duration(k) * every), Delivery: -1}
	}
	if w.Gossip != nil {
		res.Gossip = o.gossip(w.Gossip, end, every, res.WorkloadSamples)
	}
	if w.Requests != nil {
		res.Requests, res.Selection = o.requests(w.Requests, every, res.WorkloadSamples)
	}
	if w.Bulk != nil {
		b := &BulkResult{}
		var took time.Duration
		for _, r := range o.bulk {
			if r.err {
				b.Failed++
				continue
			}
			b.Transfers++
			b.Bytes += r.bytes
			took += r.took
		}
		if took > 0 {
			b.Throughput = float64(b.Bytes) / took.Seconds()
			b.Mean = Duration(took / time.Duration(b.Transfers))
		}
		res.Bulk = b
	}
	if w.Flood != nil {
		f := &FloodResult{Opened: o.floodOpened, VictimMaxStreams: o.victimMaxStreams, VictimLimit: o.victimLimit}
		for _, r := range o.reqs {
			if r.victim && r.at >= w.Flood.Start.D() {
				f.VictimRequests++
				if r.cause == "" {
					f.VictimRequestsOK++
				}
			}
		}
		res.Flood = f
	}
}

func (o *observer) gossip(g *GossipSpec, end, every time.Duration, samples []WorkloadSample) *GossipResult {
	res := &GossipResult{Published: len(o.order), DuplicatesTheory: float64(g.Fanout+1-2) / 2, SendErrors: o.gossipSendErrors}
	var to [4][]time.Duration
	var delays []time.Duration
	var dups, reached, copies, hops, hopN int
	complete := make([][2]int, len(samples)) // per interval: counted, complete
	for _, id := range o.order {
		t := o.msgs[id]
		k := min(int(t.at/every), len(samples)-1)
		samples[k].Published++
		if t.at+g.Settle.D() > end {
			continue
		}
		st := o.stat(id, t, t.at+g.Settle.D())
		res.Counted++
		complete[k][0]++
		if st.Complete {
			res.Complete++
			complete[k][1]++
		}
		for q, d := range []Duration{st.To50, st.To90, st.To99, st.To100} {
			if d > 0 || (st.Reached > 0 && st.Target == 1) {
				to[q] = append(to[q], d.D())
			}
		}
		for _, a := range t.arrivals[1:] {
			delays = append(delays, a.at-t.at)
		}
		dups += t.dups
		copies += t.copies
		reached += st.Reached
		hops += st.LastHop
		hopN++
		res.LastHopMax = max(res.LastHopMax, st.LastHop)
		if len(res.Messages) < 5000 {
			res.Messages = append(res.Messages, st)
		}
	}
	for k, c := range complete {
		if c[0] > 0 {
			samples[k].Delivery = float64(c[1]) / float64(c[0])
		}
	}
	if res.Counted > 0 {
		res.Delivery = float64(res.Complete) / float64(res.Counted)
		res.LastHopMean = float64(hops) / float64(hopN)
	}
	if reached > 0 {
		res.DuplicatesPerNode = float64(dups) / float64(reached)
	}
	if reached > res.Counted {
		res.RMR = float64(copies)/float64(reached-res.Counted) - 1
	}
	res.To50, res.To90, res.To99, res.To100 = summarize(to[0], 0), summarize(to[1], 0), summarize(to[2], 0), summarize(to[3], 0)
	res.DelayCDF = cdf(delays, 200)
	return res
}

// stat measures one message by its deadline: a target node that did not
// get it but went down before the deadline is not counted against it.
func (o *observer) stat(id uint64, t *msgTrack, deadline time.Duration) MessageStat {
	st := MessageStat{ID: id, Origin: t.origin, At: Duration(t.at)}
	got := make(map[int32]bool, len(t.arrivals))
	arr := slices.Clone(t.arrivals)
	slices.SortFunc(arr, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	for _, a := range arr {
		got[a.node] = true
	}
	st.Target = t.nTarget
	for j := range o.sc.Nodes {
		if t.target[j/64]&(1<<(j%64)) == 0 || got[int32(j)] {
			continue
		}
		if i, _ := slices.BinarySearch(o.downs[j], t.at); i < len(o.downs[j]) && o.downs[j][i] <= deadline {
			st.Target-- // it went down: not the gossip's fault
		}
	}
	st.Reached = len(arr)
	st.Complete = st.Reached >= st.Target
	st.Duplicates = t.dups
	for q, share := range []float64{0.5, 0.9, 0.99, 1} {
		need := int(math.Ceil(share * float64(st.Target)))
		if need >= 1 && need <= len(arr) {
			d := Duration(arr[need-1].at - t.at)
			switch q {
			case 0:
				st.To50 = d
			case 1:
				st.To90 = d
			case 2:
				st.To99 = d
			case 3:
				st.To100 = d
			}
		}
	}
	for _, a := range arr {
		st.LastHop = int(a.hop) // the last arrival's
	}
	return st
}

// cdf returns at most points points of the distribution of ds.
func cdf(ds []time.Duration, points int) []CDFPoint {
	if len(ds) == 0 {
		return nil
	}
	slices.Sort(ds)
	var out []CDFPoint
	step := max(len(ds)/points, 1)
	for i := step - 1; i < len(ds); i += step {
		out = append(out, CDFPoint{At: Duration(ds[i]), Share: float64(i+1) / float64(len(ds))})
	}
	if last := out[len(out)-1]; last.Share < 1 {
		out = append(out, CDFPoint{At: Duration(ds[len(ds)-1]), Share: 1})
	}
	return out
}

func (o *observer) requests(r *RequestSpec, every time.Duration, samples []WorkloadSample) (*RequestResult, []SelectionQuality) {
	res := &RequestResult{Sent: len(o.reqs), Errors: map[string]int{}}
	type acc struct {
		q       SelectionQuality
		lat     []time.Duration
		regrets []float64
		served  []int // picks per node
	}
	by := make(map[string]*acc)
	for _, s := range r.Strategies {
		by[s] = &acc{q: SelectionQuality{Strategy: s, ErrorCauses: map[string]int{}}, served: make([]int, o.sc.Nodes)}
	}
	honest := 0
	for j := range o.sc.Nodes {
		if o.w.role(j) == "" {
			honest++
		}
	}
	var all []time.Duration
	perSample := make([][]time.Duration, len(samples))
	for _, q := range o.reqs {
		k := min(int(q.at/every), len(samples)-1)
		samples[k].Requests++
		a := by[q.strategy]
		if q.cause != "" {
			res.Errors[q.cause]++
			samples[k].RequestErrors++
			a.q.Errors++
			a.q.ErrorCauses[q.cause]++
		} else {
			res.OK++
			all = append(all, q.latency)
			a.lat = append(a.lat, q.latency)
			perSample[k] = append(perSample[k], q.latency)
		}
		if q.server >= 0 {
			a.served[q.server]++
		}
		if q.judged {
			a.q.Picks++
			if q.best {
				a.q.BestShare++
			}
			a.regrets = append(a.regrets, q.regret)
		}
	}
	for k, l := range perSample {
		samples[k].RequestP50 = summarize(l, 0).P50
	}
	res.Latency = summarize(all, 0)
	var sel []SelectionQuality
	for _, s := range r.Strategies {
		a := by[s]
		if a.q.Picks > 0 {
			a.q.BestShare /= float64(a.q.Picks)
			sum := 0.0
			for _, x := range a.regrets {
				sum += x
			}
			a.q.MeanRegret = sum / float64(len(a.regrets))
			sort.Float64s(a.regrets)
			a.q.P90Regret = a.regrets[min(len(a.regrets)-1, int(0.9*float64(len(a.regrets))))]
		}
		a.q.Latency = summarize(a.lat, 0)
		a.q.BusiestShare, a.q.LoadMaxMean = concentration(a.served, honest)
		sel = append(sel, a.q)
	}
	return res, sel
}

// concentration returns the busiest node's share of the picks counted in
// served and its picks ÷ the mean over nodes nodes (0, 0 if none).
func concentration(served []int, nodes int) (share, maxMean float64) {
	total, busiest := 0, 0
	for _, n := range served {
		total += n
		busiest = max(busiest, n)
	}
	if total == 0 || nodes == 0 {
		return 0, 0
	}
	return float64(busiest) / float64(total), float64(busiest) * float64(nodes) / float64(total)
}
