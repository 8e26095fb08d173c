package simulation

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/mux"
)

// Strategy names, as in RequestSpec.Strategies and SelectionQuality.
const (
	StrategyP2C          = "p2c"
	StrategyHighestScore = "highest_score"
	StrategyRandom       = "random"
)

// WorkloadSpec is what the nodes do over their links while the scenario
// runs. Each part is optional; a Scenario without a Workload only wires
// the nodes.
type WorkloadSpec struct {
	Gossip   *GossipSpec  `json:"gossip,omitempty"`
	Requests *RequestSpec `json:"requests,omitempty"`
	Bulk     *BulkSpec    `json:"bulk,omitempty"`
	// Flood makes some nodes attackers that open streams at their peers
	// as fast as the peers let them.
	Flood *FloodSpec `json:"flood,omitempty"`
	// Squatters are nodes that link to many honest nodes and never do
	// useful work: they run no workload, serve nothing, and dial
	// SquatTargets honest nodes beyond their own edges.
	Squatters    []int `json:"squatters,omitempty"`
	SquatTargets int   `json:"squat_targets,omitempty"`
	// Trim, if set, sets the honest nodes' watermarks (Config.Trim), for
	// scenarios where trimming matters (squatters).
	Trim *TrimSpec `json:"trim,omitempty"`
}

// TrimSpec is the part of peerlink.TrimConfig a scenario sets (zero
// fields keep the manager's defaults).
type TrimSpec struct {
	HighWater     int      `json:"high_water"`
	LowWater      int      `json:"low_water"`
	GracePeriod   Duration `json:"grace_period,omitempty"`
	SilencePeriod Duration `json:"silence_period,omitempty"`
}

// GossipSpec: every node publishes messages at Rate per second (a Poisson
// process, seeded), and each node forwards a message it has not seen
// before, once it has validated it, to Fanout peers its manager's
// balancer chooses among its linked peers (those it has received the
// message from excluded: they have it), dropping duplicates by ID. A
// node sends to each peer over one long-lived stream, and each copy is
// in flight on that peer (its load, then Selection.Done) until the peer
// acknowledges it.
type GossipSpec struct {
	// Rate is messages per second per node; Size the payload's bytes
	// (256 if 0); Fanout the k of each forward (DefaultDegree − 1 if 0:
	// every neighbour but the sender on the default graph).
	Rate   float64 `json:"rate"`
	Size   int     `json:"size,omitempty"`
	Fanout int     `json:"fanout,omitempty"`
	// Priority is the forwards' stream priority: "low", "normal" (the
	// default), "high" or "critical".
	Priority string `json:"priority,omitempty"`
	// Start is when publishing begins (2 s if 0: the links are up) and
	// Settle how long before the end it stops (5 s if 0), so that every
	// message counted has had time to spread.
	Start  Duration `json:"start,omitempty"`
	Settle Duration `json:"settle,omitempty"`
	// Validation is how long a node checks a message it has not seen
	// before forwarding it (a block's or transaction's validation in a
	// real client); 0 forwards at once. Copies that come meanwhile from
	// other peers tell the node those peers have it, so its forward skips
	// them (the neighbours nearer the origin, whose copies come within
	// Validation), so duplicates fall from about degree − 2 per node
	// towards flooding's (k−2)/2, at the cost of Validation per hop. Two
	// neighbours that got it at about the same time still send it to
	// each other: at 1,000 nodes of degree 8 on 20–60 ms links, 6.0
	// duplicates per node at 0, 5.6 at 10 ms, 4.7 at 50 ms.
	Validation Duration `json:"validation,omitempty"`
}

// RequestSpec: every node sends requests at Rate per second to a peer
// SelectBest picks among its linked peers, rotating the strategies from
// request to request so that they are compared on the same run, and
// reports each outcome with Selection.Done.
type RequestSpec struct {
	Rate float64 `json:"rate"`
	// Size and ResponseSize are the bytes each way (64 and 1,024 if 0).
	Size         int `json:"size,omitempty"`
	ResponseSize int `json:"response_size,omitempty"`
	// ServiceTime is how long a node takes to answer (5 ms if 0);
	// SlowNodes answer after SlowServiceTime instead.
	ServiceTime     Duration `json:"service_time,omitempty"`
	SlowNodes       []int    `json:"slow_nodes,omitempty"`
	SlowServiceTime Duration `json:"slow_service_time,omitempty"`
	// Concurrency is how many requests a node serves at once (0: any
	// number, each in parallel, so that load costs nothing); past it,
	// requests wait in a FIFO line of at most Queue, in arrival order,
	// and past that the server refuses them at once (the requester sees
	// ErrOverloaded, counted as "overloaded"). A request still in line
	// when Timeout has passed since it arrived is dropped.
	Concurrency int `json:"concurrency,omitempty"`
	Queue       int `json:"queue,omitempty"`
	// Timeout bounds a request (2 s if 0).
	Timeout Duration `json:"timeout,omitempty"`
	// Strategies rotated over (all three if empty): StrategyP2C,
	// StrategyHighestScore, StrategyRandom.
	Strategies []string `json:"strategies,omitempty"`
	// P2CChoices is StrategyP2C's balancer.P2COptions.Choices: how many
	// peers it draws and compares (2 if 0, the manager's default).
	P2CChoices int    `json:"p2c_choices,omitempty"`
	Priority   string `json:"priority,omitempty"` // "normal" if empty
	// Start as GossipSpec's (2 s if 0).
	Start Duration `json:"start,omitempty"`
}

// BulkSpec: Senders nodes (the first ones, or Nodes) each send transfers
// of Size bytes one after another to a random linked peer, in Chunk-byte
// writes, at Priority ("low" if empty).
type BulkSpec struct {
	Senders  int      `json:"senders,omitempty"`
	Nodes    []int    `json:"nodes,omitempty"`
	Size     int64    `json:"size"`
	Chunk    int      `json:"chunk,omitempty"` // 64 KiB if 0
	Priority string   `json:"priority,omitempty"`
	Start    Duration `json:"start,omitempty"` // 2 s if 0
}

// FloodSpec: each of Nodes opens request streams at every linked peer as
// fast as that peer's limits let it, sends a request header announcing a
// body and then nothing, and opens another as soon as one is reset.
type FloodSpec struct {
	Nodes []int    `json:"nodes"`
	Start Duration `json:"start,omitempty"` // 2 s if 0
}

// Bounds on a workload's figures, so that a typo cannot ask for a run no
// machine holds.
const (
	maxMessageSize = 16 << 20
	maxRate        = 10_000
)

// clone copies w deeply enough that withDefaults does not write through
// to the caller's scenario.
func (w *WorkloadSpec) clone() *WorkloadSpec {
	c := *w
	if w.Gossip != nil {
		g := *w.Gossip
		c.Gossip = &g
	}
	if w.Requests != nil {
		r := *w.Requests
		r.Strategies = slices.Clone(r.Strategies)
		c.Requests = &r
	}
	if w.Bulk != nil {
		b := *w.Bulk
		b.Nodes = slices.Clone(b.Nodes)
		c.Bulk = &b
	}
	if w.Flood != nil {
		f := *w.Flood
		c.Flood = &f
	}
	if w.Trim != nil {
		t := *w.Trim
		c.Trim = &t
	}
	return &c
}

func (w *WorkloadSpec) withDefaults(sc Scenario) {
	if g := w.Gossip; g != nil {
		g.Size = cmpOr(g.Size, 256)
		g.Fanout = cmpOr(g.Fanout, max(sc.Degree-1, 1))
		g.Start = cmpOr(g.Start, Duration(2*time.Second))
		g.Settle = cmpOr(g.Settle, Duration(5*time.Second))
	}
	if r := w.Requests; r != nil {
		r.Size = cmpOr(r.Size, 64)
		r.ResponseSize = cmpOr(r.ResponseSize, 1024)
		r.ServiceTime = cmpOr(r.ServiceTime, Duration(5*time.Millisecond))
		r.Timeout = cmpOr(r.Timeout, Duration(2*time.Second))
		r.Start = cmpOr(r.Start, Duration(2*time.Second))
		if len(r.Strategies) == 0 {
			r.Strategies = []string{StrategyP2C, StrategyHighestScore, StrategyRandom}
		}
	}
	if b := w.Bulk; b != nil {
		b.Chunk = cmpOr(b.Chunk, 64<<10)
		b.Start = cmpOr(b.Start, Duration(2*time.Second))
		if len(b.Nodes) == 0 {
			for i := range min(b.Senders, sc.Nodes) {
				b.Nodes = append(b.Nodes, i)
			}
		}
		b.Priority = cmpOr(b.Priority, "low")
	}
	if f := w.Flood; f != nil {
		f.Start = cmpOr(f.Start, Duration(2*time.Second))
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validate returns the first field out of range, named from the
// Workload, and what is wrong with it.
func (w *WorkloadSpec) validate(n int) (field, problem string) {
	nodes := func(field string, ns []int) (string, string) {
		for _, i := range ns {
			if i < 0 || i >= n {
				return field, fmt.Sprintf("has node %d, out of range [0, %d)", i, n)
			}
		}
		return "", ""
	}
	rate := func(field string, r float64) (string, string) {
		if !(r >= 0 && r <= maxRate) {
			return field, fmt.Sprintf("is %v, want 0 to %d per second", r, maxRate)
		}
		return "", ""
	}
	size := func(field string, s int64) (string, string) {
		if s < 0 || s > maxMessageSize {
			return field, fmt.Sprintf("is %d, want 0 to %d bytes", s, maxMessageSize)
		}
		return "", ""
	}
	prio := func(field, p string) (string, string) {
		if p == "" {
			return "", ""
		}
		if _, err := mux.ParsePriority(p); err != nil {
			return field, fmt.Sprintf("is %q, want low, normal, high or critical", p)
		}
		return "", ""
	}
	nonNeg := func(field string, d Duration) (string, string) {
		if d < 0 {
			return field, fmt.Sprintf("is %v, want 0 or more", d)
		}
		return "", ""
	}
	first := func(checks ...[2]string) (string, string) {
		for _, c := range checks {
			if c[0] != "" {
				return c[0], c[1]
			}
		}
		return "", ""
	}
	c := func(f, p string) [2]string { return [2]string{f, p} }
	if g := w.Gossip; g != nil {
		if f, p := first(c(rate("Gossip.Rate", g.Rate)), c(size("Gossip.Size", int64(g.Size))), c(prio("Gossip.Priority", g.Priority)),
			c(nonNeg("Gossip.Start", g.Start)), c(nonNeg("Gossip.Settle", g.Settle)), c(nonNeg("Gossip.Validation", g.Validation))); f != "" {
			return f, p
		}
		if g.Fanout < 0 {
			return "Gossip.Fanout", fmt.Sprintf("is %d, want 1 or more (0: degree − 1)", g.Fanout)
		}
	}
	if r := w.Requests; r != nil {
		if f, p := first(c(rate("Requests.Rate", r.Rate)), c(size("Requests.Size", int64(r.Size))), c(size("Requests.ResponseSize", int64(r.ResponseSize))),
			c(nonNeg("Requests.ServiceTime", r.ServiceTime)), c(nonNeg("Requests.SlowServiceTime", r.SlowServiceTime)), c(nonNeg("Requests.Timeout", r.Timeout)),
			c(nonNeg("Requests.Start", r.Start)), c(nodes("Requests.SlowNodes", r.SlowNodes)), c(prio("Requests.Priority", r.Priority))); f != "" {
			return f, p
		}
		if r.P2CChoices < 0 || r.P2CChoices > balancer.MaxChoices {
			return "Requests.P2CChoices", fmt.Sprintf("is %d, want 0 (2) to %d", r.P2CChoices, balancer.MaxChoices)
		}
		if r.Concurrency < 0 {
			return "Requests.Concurrency", fmt.Sprintf("is %d, want 0 (no limit) or more", r.Concurrency)
		}
		if r.Queue < 0 || (r.Queue > 0 && r.Concurrency == 0) {
			return "Requests.Queue", fmt.Sprintf("is %d with Concurrency %d, want 0, or more with a Concurrency", r.Queue, r.Concurrency)
		}
		for k, s := range r.Strategies {
			if !slices.Contains([]string{StrategyP2C, StrategyHighestScore, StrategyRandom}, s) {
				return fmt.Sprintf("Requests.Strategies[%d]", k), fmt.Sprintf("is %q, want %q, %q or %q", s, StrategyP2C, StrategyHighestScore, StrategyRandom)
			}
		}
	}
	if b := w.Bulk; b != nil {
		if b.Size <= 0 || b.Size > math.MaxInt32 {
			return "Bulk.Size", fmt.Sprintf("is %d, want 1 to %d bytes", b.Size, math.MaxInt32)
		}
		if f, p := first(c(size("Bulk.Chunk", int64(b.Chunk))), c(nodes("Bulk.Nodes", b.Nodes)), c(prio("Bulk.Priority", b.Priority)), c(nonNeg("Bulk.Start", b.Start))); f != "" {
			return f, p
		}
		if b.Senders < 0 {
			return "Bulk.Senders", fmt.Sprintf("is %d, want 0 or more", b.Senders)
		}
	}
	if fl := w.Flood; fl != nil {
		if len(fl.Nodes) == 0 {
			return "Flood.Nodes", "is empty"
		}
		if f, p := first(c(nodes("Flood.Nodes", fl.Nodes)), c(nonNeg("Flood.Start", fl.Start))); f != "" {
			return f, p
		}
	}
	if f, p := nodes("Squatters", w.Squatters); f != "" {
		return f, p
	}
	if w.SquatTargets < 0 {
		return "SquatTargets", fmt.Sprintf("is %d, want 0 or more", w.SquatTargets)
	}
	if t := w.Trim; t != nil && (t.HighWater < 0 || t.LowWater < 0 || t.LowWater > t.HighWater || t.GracePeriod < 0 || t.SilencePeriod < 0) {
		return "Trim", fmt.Sprintf("%+v: want 0 ≤ LowWater ≤ HighWater and no negative period", *t)
	}
	return "", ""
}

// role returns what node i does: "flood", "squat" or "" (honest).
func (w *WorkloadSpec) role(i int) string {
	switch {
	case w == nil:
		return ""
	case w.Flood != nil && slices.Contains(w.Flood.Nodes, i):
		return "flood"
	case slices.Contains(w.Squatters, i):
		return "squat"
	}
	return ""
}

// priority parses a validated priority, def if empty.
func priority(s string, def mux.Priority) mux.Priority {
	if s == "" {
		return def
	}
	p, _ := mux.ParsePriority(s)
	return p
}
