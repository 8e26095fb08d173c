package simulation

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

// Errors of Sim's node controls.
var (
	ErrNodeDown = errors.New("simulation: node is down")
	ErrNodeUp   = errors.New("simulation: node is up")
	ErrClosed   = errors.New("simulation: closed")
	ErrRunTwice = errors.New("simulation: Run called twice")
)

// Options tune how a run executes, apart from what it simulates.
type Options struct {
	// Settle, if set, is called whenever the harness has slept to a
	// virtual instant (a fault, the end), before it acts, so that
	// everything due at that instant has run first. Inside a
	// testing/synctest bubble pass synctest.Wait: faults then land
	// between, never amid, the work of one instant, which the trace's
	// repeatability depends on.
	Settle func()
	// Configure, if set, edits node i's manager config before each
	// start (restarts included); Identity, Transport, ListenAddrs and
	// Rand are the harness's and are set again after it.
	Configure func(i int, cfg *peerlink.Config)
	// Progress, if set, is called every virtual second while Run runs,
	// from a goroutine of Run's, with the run's state (for a progress
	// line); it must return quickly.
	Progress func(Progress)
}

// eventBuffer returns node i's subscription buffer: several times the
// events of one instant (all its links dropping at once and their
// successors coming up), so that the collector, which drains it without
// pause, never loses one (Result.DroppedEvents says if it did). Not more:
// an Event is about 120 bytes, and 4,096 of them per node were two
// thirds of the heap of a run.
func (s *Sim) eventBuffer(i int) int { return 32 + 4*s.graph.Degree(i) }

// Sim is a running simulation: a Network and one real ConnectionManager
// per node, wired as the scenario's graph through the managers' public
// API (the lower-numbered end of each edge keeps the other as a
// persistent peer), and a trace of every node's connection events and
// of the faults. Its methods are safe for concurrent use.
//
// Start it, and Close it, inside the synctest bubble if it runs in one.
type Sim struct {
	sc    Scenario
	opts  Options
	net   *Network
	graph Graph
	ids   []*peer.Identity
	index map[peer.ID]int
	start time.Time

	heap0       uint64        // heap in use before the nodes started
	cpu0        time.Duration // the process's CPU time then
	stacks0     uint64        // goroutine stacks then
	goroutines0 int

	mu     sync.Mutex
	nodes  []simNode
	trace  []Record
	closed bool

	collectors sync.WaitGroup
	dropped    atomic.Uint64
	ran        atomic.Bool

	obs             *observer // nil without a workload
	breakerOpenings atomic.Int64
	trims           atomic.Int64 // links closed by trims, at either end
	trimmedSquat    atomic.Int64 // of which a squatter's
}

type simNode struct {
	m     *peerlink.ConnectionManager // nil while down
	agent *Agent                      // nil without a workload
	inc   int                         // starts so far, this one included
}

// Start builds the scenario's network and graph and starts every node;
// the links then come up in the background (Run waits the scenario's
// Duration). Close it when done, even after an error from Run.
func Start(sc Scenario, opts Options) (*Sim, error) {
	sc = sc.withDefaults()
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	g, err := sc.Graph()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	nw, err := NewNetwork(sc.Nodes, sc.Link, sc.Seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	s := &Sim{
		sc:    sc,
		opts:  opts,
		net:   nw,
		graph: g,
		ids:   make([]*peer.Identity, sc.Nodes),
		index: make(map[peer.ID]int, sc.Nodes),
		nodes: make([]simNode, sc.Nodes),
	}
	if sc.Workload != nil {
		s.obs = newObserver(s)
	}
	for i := range s.ids {
		if s.ids[i], err = identity(sc.Seed, i); err != nil {
			return nil, err
		}
		s.index[s.ids[i].ID()] = i
	}
	s.heap0, s.stacks0 = memInUse()
	s.goroutines0 = runtime.NumGoroutine()
	s.cpu0 = processCPU()
	s.start = time.Now()
	for i := range s.nodes {
		if err := s.startNode(i); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// identity derives node i's key from the seed, so that peer IDs (and
// whatever orders by them) repeat from run to run.
func identity(seed uint64, i int) (*peer.Identity, error) {
	var b [ed25519.SeedSize]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	binary.LittleEndian.PutUint64(b[8:], streamIdentity)
	binary.LittleEndian.PutUint64(b[16:], uint64(i))
	r := rand.NewChaCha8(b)
	_, _ = r.Read(b[:])
	return peer.IdentityFromKey(ed25519.NewKeyFromSeed(b[:]))
}

// Network returns the simulated network, for faults beyond the
// scenario's and for the true link figures.
func (s *Sim) Network() *Network { return s.net }

// Graph returns the topology the nodes are wired as.
func (s *Sim) Graph() Graph { return s.graph }

// ID returns node i's peer ID (the same across restarts).
func (s *Sim) ID(i int) peer.ID { return s.ids[i].ID() }

// Node returns node i's index from its peer ID.
func (s *Sim) Node(id peer.ID) (int, bool) {
	i, ok := s.index[id]
	return i, ok
}

// Manager returns node i's running manager, nil while it is down.
func (s *Sim) Manager(i int) *peerlink.ConnectionManager {
	s.net.check(i)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[i].m
}

// Elapsed returns the virtual time since Start.
func (s *Sim) Elapsed() time.Duration { return time.Since(s.start) }

// startNode starts node i's next incarnation: a manager with the node's
// identity, subscribed before it listens or dials so that the trace
// misses no event, then its persistent peers.
func (s *Sim) startNode(i int) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.nodes[i].m != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: node %d", ErrNodeUp, i)
	}
	inc := s.nodes[i].inc + 1
	s.mu.Unlock()

	cfg := peerlink.DefaultConfig()
	cfg.Health = s.sc.Health.config()
	s.sc.Workload.configure(s.role(i), &cfg)
	if s.opts.Configure != nil {
		s.opts.Configure(i, &cfg)
	}
	cfg.Identity = s.ids[i]
	cfg.Transport = s.net.Transport(i)
	cfg.ListenAddrs = nil
	cfg.Rand = newInstantSource(s.sc.Seed, i, inc)
	m, err := peerlink.New(cfg)
	if err != nil {
		return fmt.Errorf("simulation: node %d: %w", i, err)
	}
	sub := m.Subscribe(s.eventBuffer(i))
	var agent *Agent
	if s.obs != nil {
		// Before Listen: the handlers are there when the first link is.
		agent, err = NewAgent(m, AgentConfig{
			Node: i, Incarnation: inc, Seed: agentSeed(s.sc.Seed, i, inc),
			Workload: s.sc.Workload, Role: s.role(i), Begin: s.start, Duration: s.sc.Duration.D(), Observer: s.obs,
		})
		if err != nil {
			return errors.Join(fmt.Errorf("simulation: node %d: %w", i, err), m.Close())
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.Join(ErrClosed, m.Close())
	}
	s.nodes[i] = simNode{m: m, agent: agent, inc: inc}
	if inc > 1 {
		s.appendLocked(Record{At: s.Elapsed(), Kind: KindRestart, Node: i, Inc: inc, Peer: -1})
	}
	s.collectors.Add(1)
	s.mu.Unlock()
	go s.collect(i, inc, sub)

	if err := m.Listen(s.net.Addr(i)); err != nil {
		return fmt.Errorf("simulation: node %d: %w", i, err)
	}
	for _, j := range s.graph.Adj[i] {
		if j < i {
			continue // j dials us
		}
		if err := m.AddPersistentPeer(peer.AddrInfo{ID: s.ids[j].ID(), Addrs: []string{s.net.Addr(j)}}); err != nil {
			return fmt.Errorf("simulation: node %d: persistent peer %d: %w", i, j, err)
		}
		// Each reconnect loop draws its first wait from the manager's
		// one random source as it starts: let it, before the next loop
		// starts, so that the draws go to the peers in a fixed order.
		s.settle()
	}
	if s.role(i) == "squat" {
		for _, j := range s.squatTargets(i) {
			if err := m.AddPersistentPeer(peer.AddrInfo{ID: s.ids[j].ID(), Addrs: []string{s.net.Addr(j)}}); err != nil {
				return fmt.Errorf("simulation: squatter %d: peer %d: %w", i, j, err)
			}
			s.settle()
		}
	}
	if agent != nil {
		agent.Start()
	}
	return nil
}

// collect records one incarnation's events until its manager closes the
// subscription.
func (s *Sim) collect(i, inc int, sub *peerlink.Subscription) {
	defer s.collectors.Done()
	for ev := range sub.C {
		r := Record{At: ev.Time.Sub(s.start), Node: i, Inc: inc, Peer: -1, Reason: ev.Reason, Dir: uint8(ev.Direction)}
		switch ev.Type {
		case peerlink.EventConnected:
			r.Kind = KindConnected
		case peerlink.EventDisconnected:
			r.Kind = KindDisconnected
		case peerlink.EventCircuit:
			// Counted, not traced: circuit changes follow from the dials.
			if ev.To == breaker.StateOpen {
				s.breakerOpenings.Add(1)
			}
			continue
		default:
			continue
		}
		if j, ok := s.index[ev.Peer]; ok {
			r.Peer = j
		}
		if ev.Type == peerlink.EventDisconnected && ev.Reason == peerlink.ReasonTrimmed {
			s.trims.Add(1)
			if r.Peer >= 0 && s.role(r.Peer) == "squat" {
				s.trimmedSquat.Add(1)
			}
		}
		s.mu.Lock()
		s.appendLocked(r)
		s.mu.Unlock()
	}
	s.dropped.Add(sub.Dropped())
}

func (s *Sim) appendLocked(r Record) {
	r.seq = uint64(len(s.trace))
	s.trace = append(s.trace, r)
}

// record adds a fault to the trace.
func (s *Sim) record(r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendLocked(r)
}

// Crash stops node i's manager at once (Close: its links drop, as when
// its process dies and its kernel closes the sockets).
func (s *Sim) Crash(i int) error { return s.stop(i, KindCrash) }

// PowerOff stops node i as a power cut or a frozen host does: its links
// go silent (the sockets stay open at its peers, which must find out by
// their health checks), then its manager stops.
func (s *Sim) PowerOff(i int) error { return s.stop(i, KindPowerOff) }

func (s *Sim) stop(i int, kind Kind) error {
	if err := s.net.valid(i); err != nil {
		return err
	}
	s.mu.Lock()
	m, agent := s.nodes[i].m, s.nodes[i].agent
	if m == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: node %d", ErrNodeDown, i)
	}
	s.nodes[i].m, s.nodes[i].agent = nil, nil
	s.appendLocked(Record{At: s.Elapsed(), Kind: kind, Node: i, Inc: s.nodes[i].inc, Peer: -1})
	s.mu.Unlock()
	if s.obs != nil {
		s.obs.nodeDown(i, s.Elapsed())
	}
	if agent != nil {
		agent.Close()
	}
	if kind == KindPowerOff {
		// Nothing it sends from now on, its close included, reaches
		// anyone.
		s.net.BlackHoleNode(i)
	}
	return m.Close()
}

// Restart starts crashed node i again with the same identity and
// address; it redials the neighbours it keeps as persistent peers, and
// the others redial it.
func (s *Sim) Restart(i int) error {
	if err := s.net.valid(i); err != nil {
		return err
	}
	return s.startNode(i)
}

// Close stops every node and waits for the trace's collectors. It is
// safe to call twice.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ms []*peerlink.ConnectionManager
	var agents []*Agent
	for i := range s.nodes {
		if m := s.nodes[i].m; m != nil {
			ms = append(ms, m)
			s.nodes[i].m = nil
		}
		if a := s.nodes[i].agent; a != nil {
			agents = append(agents, a)
			s.nodes[i].agent = nil
		}
	}
	s.mu.Unlock()
	// The agents first: their goroutines use the managers.
	for _, a := range agents {
		a.Close()
	}
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for k, m := range ms {
		wg.Go(func() { errs[k] = m.Close() })
	}
	wg.Wait()
	s.collectors.Wait()
	return errors.Join(errs...)
}

// Run plays the scenario's faults at their virtual times until its
// Duration has passed since Start, then returns the measures. ctx
// bounds it; the nodes keep running until Close. It runs once: a second
// call returns ErrRunTwice.
func (s *Sim) Run(ctx context.Context) (*Result, error) {
	if s.ran.Swap(true) {
		return nil, ErrRunTwice
	}
	stop := s.watch()
	defer stop()
	for _, a := range s.sc.schedule() {
		if a.at >= s.sc.Duration.D() {
			break
		}
		if err := s.sleepUntil(ctx, a.at); err != nil {
			return nil, err
		}
		if err := s.apply(a); err != nil {
			return nil, err
		}
	}
	if err := s.sleepUntil(ctx, s.sc.Duration.D()); err != nil {
		return nil, err
	}
	return s.result(), nil
}

// Run starts sc, runs it and closes it: see Start and Sim.Run.
func Run(ctx context.Context, sc Scenario, opts Options) (*Result, error) {
	s, err := Start(sc, opts)
	if err != nil {
		return nil, err
	}
	res, err := s.Run(ctx)
	return res, errors.Join(err, s.Close())
}

func (s *Sim) sleepUntil(ctx context.Context, at time.Duration) error {
	if d := time.Until(s.start.Add(at)); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	s.settle()
	return nil
}

func (s *Sim) settle() {
	if s.opts.Settle != nil {
		s.opts.Settle()
	}
}

// Apply applies fault f now (its At is ignored), and records it in the
// trace as a scheduled fault would be: for faults that a test or a
// workload decides on the fly. A fault with a For, and churn, which
// need a schedule, belong in the Scenario: Apply refuses them.
func (s *Sim) Apply(f Fault) error {
	if f.Kind == FaultChurn || f.For != 0 {
		return fmt.Errorf("%w: Apply: a %s fault with For %v needs a schedule: put it in the Scenario", ErrScenario, f.Kind, f.For)
	}
	f.At = 0
	if field, problem := f.validate(s.sc.Nodes); field != "" {
		return fmt.Errorf("%w: Apply: %s %s", ErrScenario, field, problem)
	}
	for _, a := range (Scenario{Nodes: s.sc.Nodes, Faults: []Fault{f}}).schedule() {
		if err := s.apply(a); err != nil {
			return err
		}
	}
	return nil
}

// apply carries out one scheduled fault.
func (s *Sim) apply(a action) error {
	at := s.Elapsed()
	first := -1
	if len(a.nodes) > 0 {
		first = a.nodes[0]
	}
	switch a.kind {
	case FaultReset:
		s.record(Record{At: at, Kind: KindReset, Node: a.nodes[0], Peer: a.nodes[1], act: &a})
		s.net.Reset(a.nodes[0], a.nodes[1])
	case FaultBlackHole:
		s.record(Record{At: at, Kind: KindBlackHole, Node: a.nodes[0], Peer: a.nodes[1], act: &a})
		s.net.BlackHole(a.nodes[0], a.nodes[1])
	case FaultDegrade:
		s.record(Record{At: at, Kind: KindDegrade, Node: a.nodes[0], Peer: a.nodes[1], act: &a})
		return s.net.Degrade(a.nodes[0], a.nodes[1], a.link)
	case FaultDegradeNode:
		for _, i := range a.nodes {
			s.record(Record{At: at, Kind: KindDegrade, Node: i, Peer: -1, act: &a})
			for _, j := range s.graph.Adj[i] {
				if err := errors.Join(s.net.Degrade(i, j, a.link), s.net.Degrade(j, i, a.link)); err != nil {
					return err
				}
			}
		}
	case FaultPartition:
		s.record(Record{At: at, Kind: KindPartition, Node: first, Peer: -1, act: &a})
		return s.net.Partition(a.groups...)
	case FaultHeal:
		s.record(Record{At: at, Kind: KindHeal, Node: -1, Peer: -1, act: &a})
		s.net.Heal()
	case FaultCrash:
		for _, i := range a.nodes {
			if err := s.Crash(i); err != nil && !errors.Is(err, ErrNodeDown) {
				return err
			}
		}
	case FaultPowerOff:
		for _, i := range a.nodes {
			if err := s.PowerOff(i); err != nil && !errors.Is(err, ErrNodeDown) {
				return err
			}
		}
	case FaultRestart:
		for _, i := range a.nodes {
			if err := s.Restart(i); err != nil && !errors.Is(err, ErrNodeUp) {
				return err
			}
		}
	}
	return nil
}

// memInUse returns the live heap after a collection, and the goroutine
// stacks.
func memInUse() (heap, stacks uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}
