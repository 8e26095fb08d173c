package simulation

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// ErrScenario is wrapped by every error of Scenario.Validate; the message
// names the field that is wrong.
var ErrScenario = errors.New("simulation: bad scenario")

// Fault kinds, as in Fault.Kind.
const (
	// FaultReset kills every link between Nodes[0] and Nodes[1].
	FaultReset = "reset"
	// FaultBlackHole silences every link open between Nodes[0] and
	// Nodes[1] (see Network.BlackHole).
	FaultBlackHole = "blackhole"
	// FaultPartition cuts the network into Groups (see
	// Network.Partition); with For set it heals For later.
	FaultPartition = "partition"
	// FaultHeal ends the partition.
	FaultHeal = "heal"
	// FaultCrash stops the managers of Nodes; with For set they restart
	// For later, with the same identity and address.
	FaultCrash = "crash"
	// FaultPowerOff stops the nodes of Nodes as a power cut or a frozen
	// host does: their links go silent first (Network.BlackHoleNode),
	// so that their peers find out only by their own health checks, then
	// their managers stop. With For set they restart For later.
	FaultPowerOff = "poweroff"
	// FaultRestart starts the crashed managers of Nodes again.
	FaultRestart = "restart"
	// FaultChurn crashes nodes at Rate per second over the whole network
	// (a Poisson process, seeded) from At for For, each chosen uniformly
	// among the nodes up at that time, and restarts each Down later.
	FaultChurn = "churn"
	// FaultDegrade slows the directed link Nodes[0] → Nodes[1] by Link
	// (see Network.Degrade).
	FaultDegrade = "degrade"
	// FaultDegradeNode slows every link of the topology to and from each
	// of Nodes by Link, both directions: a degraded peer.
	FaultDegradeNode = "degrade_node"
)

// Fault is one fault of a Scenario, at a virtual time from the start.
type Fault struct {
	Kind   string   `json:"kind"`
	At     Duration `json:"at"`
	Nodes  []int    `json:"nodes,omitempty"`
	Groups [][]int  `json:"groups,omitempty"`
	For    Duration `json:"for,omitempty"`
	Rate   float64  `json:"rate,omitempty"`
	Down   Duration `json:"down,omitempty"`
	// Link is what FaultDegrade adds: Latency added, Bandwidth the new
	// bottleneck (0: none).
	Link *LinkSpec `json:"link,omitempty"`
}

// HealthSpec overrides the managers' health monitor (zero fields keep
// health's defaults: 10 s, 5 s, 3 failures).
type HealthSpec struct {
	Interval         Duration `json:"interval,omitempty"`
	Timeout          Duration `json:"timeout,omitempty"`
	FailureThreshold int      `json:"failure_threshold,omitempty"`
}

func (h HealthSpec) config() health.Config {
	c := health.DefaultConfig()
	if h.Interval > 0 {
		c.Interval = h.Interval.D()
	}
	if h.Timeout > 0 {
		c.Timeout = h.Timeout.D()
	}
	if h.FailureThreshold > 0 {
		c.FailureThreshold = h.FailureThreshold
	}
	return c
}

// Scenario describes one simulation run: the nodes, how they are wired,
// their links, the faults, for how long. It decodes from JSON (see
// DecodeScenario); durations are strings such as "30s".
type Scenario struct {
	Name  string `json:"name,omitempty"`
	Nodes int    `json:"nodes"`
	// Topology is TopologyRandomRegular (the default), TopologySmallWorld
	// or TopologyFullMesh. Degree is the random-regular degree or the
	// small world's lattice degree (8 if 0; ignored by the full mesh);
	// Rewire is the small world's rewiring probability.
	Topology string  `json:"topology,omitempty"`
	Degree   int     `json:"degree,omitempty"`
	Rewire   float64 `json:"rewire,omitempty"`
	// Duration is the virtual time the run lasts, from the managers'
	// start.
	Duration Duration `json:"duration"`
	// Seed decides the topology, the link figures, the fault schedule
	// (churn), the identities and every manager's randomness.
	Seed   uint64     `json:"seed"`
	Link   LinkSpec   `json:"link"`
	Health HealthSpec `json:"health,omitzero"`
	Faults []Fault    `json:"faults,omitempty"`
	// SampleEvery is the spacing of the connectivity samples (1 s if 0).
	SampleEvery Duration `json:"sample_every,omitempty"`
	// Workload is what the nodes do over their links (nothing if nil).
	Workload *WorkloadSpec `json:"workload,omitempty"`
}

// Bounds on a Scenario, so that a typo cannot ask for a run no machine
// holds: a node costs about 0.6 MB (10,000 nodes of degree 8 peak at
// 5.7 GB), and each churn crash is scheduled up front.
const (
	MaxNodes       = 1 << 20
	MaxChurnEvents = 1_000_000
)

// DefaultDegree is a Scenario's Degree when it is 0, as in Ethereum's
// and libp2p gossipsub's meshes.
const DefaultDegree = 8

// DecodeScenario reads one JSON scenario, refusing unknown fields, and
// validates it.
func DecodeScenario(r io.Reader) (Scenario, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return Scenario{}, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	if dec.More() {
		return Scenario{}, fmt.Errorf("%w: more than one JSON value", ErrScenario)
	}
	sc = sc.withDefaults()
	return sc, sc.Validate()
}

// ParseScenario is DecodeScenario over b.
func ParseScenario(b []byte) (Scenario, error) { return DecodeScenario(bytes.NewReader(b)) }

func (sc Scenario) withDefaults() Scenario {
	if sc.Topology == "" {
		sc.Topology = TopologyRandomRegular
	}
	if sc.Degree == 0 && sc.Topology != TopologyFullMesh {
		sc.Degree = DefaultDegree
	}
	if sc.SampleEvery == 0 {
		sc.SampleEvery = Duration(time.Second)
	}
	if sc.Workload != nil {
		// A copy: the caller's scenario keeps its zero fields.
		sc.Workload = sc.Workload.clone()
		sc.Workload.withDefaults(sc)
	}
	return sc
}

// Validate reports the first field out of range, by name; the error
// wraps ErrScenario. It checks what can be checked without building the
// graph (Graph reports what the topology cannot satisfy).
func (sc Scenario) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrScenario, field, fmt.Sprintf(format, args...))
	}
	switch {
	case sc.Nodes < 2 || sc.Nodes > MaxNodes:
		return bad("Nodes", "is %d, want 2 to %d", sc.Nodes, MaxNodes)
	case sc.Duration <= 0:
		return bad("Duration", "is %v, want a positive duration", sc.Duration)
	case sc.SampleEvery < 0:
		return bad("SampleEvery", "is %v, want a positive duration (or 0: 1 s)", sc.SampleEvery)
	case !slices.Contains([]string{"", TopologyRandomRegular, TopologySmallWorld, TopologyFullMesh}, sc.Topology):
		return bad("Topology", "is %q, want %q, %q or %q", sc.Topology, TopologyRandomRegular, TopologySmallWorld, TopologyFullMesh)
	case sc.Degree < 0:
		return bad("Degree", "is %d, want 0 (%d) or more", sc.Degree, DefaultDegree)
	case !(sc.Rewire >= 0 && sc.Rewire <= 1):
		return bad("Rewire", "is %v, want 0 to 1", sc.Rewire)
	case sc.Health.Interval < 0 || sc.Health.Timeout < 0 || sc.Health.FailureThreshold < 0:
		return bad("Health", "%+v has a negative field", sc.Health)
	}
	if err := sc.Link.Validate(); err != nil {
		return fmt.Errorf("%w: Link: %w", ErrScenario, err)
	}
	for k, f := range sc.Faults {
		if field, problem := f.validate(sc.Nodes); field != "" {
			return bad(fmt.Sprintf("Faults[%d].%s", k, field), "%s", problem)
		}
	}
	if sc.Workload != nil {
		if field, problem := sc.Workload.validate(sc.Nodes); field != "" {
			return bad("Workload."+field, "%s", problem)
		}
	}
	return nil
}

// validate returns the first field of f out of range (with "" for a
// node out of range) and what is wrong with it.
func (f Fault) validate(n int) (field, problem string) {
	inRange := func(field string, nodes []int) (string, string) {
		for _, i := range nodes {
			if i < 0 || i >= n {
				return field, fmt.Sprintf("has node %d, out of range [0, %d)", i, n)
			}
		}
		return "", ""
	}
	pair := func() (string, string) {
		if len(f.Nodes) != 2 || f.Nodes[0] == f.Nodes[1] {
			return "Nodes", fmt.Sprintf("is %v, want two different nodes", f.Nodes)
		}
		return inRange("Nodes", f.Nodes)
	}
	if f.At < 0 {
		return "At", fmt.Sprintf("is %v, want 0 or more", f.At)
	}
	if f.For < 0 {
		return "For", fmt.Sprintf("is %v, want 0 or more", f.For)
	}
	switch f.Kind {
	case FaultReset, FaultBlackHole:
		return pair()
	case FaultDegrade, FaultDegradeNode:
		if f.Link == nil {
			return "Link", "is missing"
		}
		if f.Link.Latency < 0 || f.Link.Bandwidth < 0 || f.Link.Buffer < 0 {
			return "Link", fmt.Sprintf("%+v has a negative field", *f.Link)
		}
		if f.Kind == FaultDegradeNode {
			if len(f.Nodes) == 0 {
				return "Nodes", "is empty"
			}
			return inRange("Nodes", f.Nodes)
		}
		return pair()
	case FaultPartition:
		if len(f.Groups) == 0 {
			return "Groups", "is empty"
		}
		seen := make(map[int]bool)
		for k, g := range f.Groups {
			if field, problem := inRange(fmt.Sprintf("Groups[%d]", k), g); field != "" {
				return field, problem
			}
			for _, i := range g {
				if seen[i] {
					return fmt.Sprintf("Groups[%d]", k), fmt.Sprintf("has node %d, which is in two groups", i)
				}
				seen[i] = true
			}
		}
	case FaultHeal:
	case FaultCrash, FaultPowerOff, FaultRestart:
		if len(f.Nodes) == 0 {
			return "Nodes", "is empty"
		}
		return inRange("Nodes", f.Nodes)
	case FaultChurn:
		switch {
		case !(f.Rate > 0) || math.IsInf(f.Rate, 0):
			return "Rate", fmt.Sprintf("is %v, want crashes per second > 0", f.Rate)
		case f.For <= 0:
			return "For", fmt.Sprintf("is %v, want how long churn lasts", f.For)
		case f.Down <= 0:
			return "Down", fmt.Sprintf("is %v, want how long a churned node stays down", f.Down)
		case f.Rate*f.For.D().Seconds() > MaxChurnEvents:
			return "Rate", fmt.Sprintf("is %v per second for %v: %.3g crashes, want at most %d", f.Rate, f.For, f.Rate*f.For.D().Seconds(), MaxChurnEvents)
		}
	default:
		return "Kind", fmt.Sprintf("is %q, unknown", f.Kind)
	}
	return "", ""
}

// Graph builds the scenario's topology.
func (sc Scenario) Graph() (Graph, error) {
	sc = sc.withDefaults()
	switch sc.Topology {
	case TopologySmallWorld:
		return SmallWorld(sc.Nodes, sc.Degree, sc.Rewire, sc.Seed)
	case TopologyFullMesh:
		return FullMesh(sc.Nodes)
	default:
		return RandomRegular(sc.Nodes, sc.Degree, sc.Seed)
	}
}

// action is one step of the expanded fault schedule.
type action struct {
	at     time.Duration
	kind   string // a Fault kind but churn
	nodes  []int
	groups [][]int
	link   faultnet.Link
	cause  string // what a crash or restart is part of: its fault's kind
}

// schedule expands the faults into actions in time order (ties keep the
// faults' order): churn becomes crashes and restarts drawn from the seed,
// For becomes the matching heal or restart.
func (sc Scenario) schedule() []action {
	var acts []action
	r := newRand(sc.Seed, streamFaults)
	// down lists when nodes are down by the explicit crashes, for churn
	// to choose among the nodes up.
	down := make([][][2]time.Duration, sc.Nodes) // per node: [from, to)
	for _, f := range sc.Faults {
		if f.Kind != FaultCrash && f.Kind != FaultPowerOff {
			continue
		}
		to := time.Duration(math.MaxInt64)
		if f.For > 0 {
			to = f.At.D() + f.For.D()
		}
		for _, i := range f.Nodes {
			down[i] = append(down[i], [2]time.Duration{f.At.D(), to})
		}
	}
	isUp := func(i int, t time.Duration) bool {
		for _, d := range down[i] {
			if d[0] <= t && t < d[1] {
				return false
			}
		}
		return true
	}
	for _, f := range sc.Faults {
		at := f.At.D()
		switch f.Kind {
		case FaultPartition:
			acts = append(acts, action{at: at, kind: f.Kind, groups: f.Groups})
			if f.For > 0 {
				acts = append(acts, action{at: at + f.For.D(), kind: FaultHeal})
			}
		case FaultCrash, FaultPowerOff:
			acts = append(acts, action{at: at, kind: f.Kind, nodes: f.Nodes, cause: f.Kind})
			if f.For > 0 {
				acts = append(acts, action{at: at + f.For.D(), kind: FaultRestart, nodes: f.Nodes, cause: f.Kind})
			}
		case FaultDegrade, FaultDegradeNode:
			acts = append(acts, action{at: at, kind: f.Kind, nodes: f.Nodes,
				link: faultnet.Link{Latency: f.Link.Latency.D(), Bandwidth: f.Link.Bandwidth, Buffer: f.Link.Buffer}})
		case FaultChurn:
			end := at + f.For.D()
			for t := at; ; {
				t += time.Duration(r.ExpFloat64() / f.Rate * float64(time.Second))
				if t >= end {
					break
				}
				var up []int
				for i := range sc.Nodes {
					if isUp(i, t) {
						up = append(up, i)
					}
				}
				if len(up) == 0 {
					continue
				}
				i := up[r.IntN(len(up))]
				down[i] = append(down[i], [2]time.Duration{t, t + f.Down.D()})
				acts = append(acts,
					action{at: t, kind: FaultCrash, nodes: []int{i}, cause: FaultChurn},
					action{at: t + f.Down.D(), kind: FaultRestart, nodes: []int{i}, cause: FaultChurn})
			}
		default:
			acts = append(acts, action{at: at, kind: f.Kind, nodes: f.Nodes, cause: f.Kind})
		}
	}
	slices.SortStableFunc(acts, func(a, b action) int { return cmp.Compare(a.at, b.at) })
	return acts
}
