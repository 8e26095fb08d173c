package simulation

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

// The workloads' stream protocols.
const (
	GossipProtocol  = "/peerlink-sim/gossip/1"
	RequestProtocol = "/peerlink-sim/request/1"
	BulkProtocol    = "/peerlink-sim/bulk/1"
)

// ErrAgent is wrapped by NewAgent's errors about its config.
var ErrAgent = errors.New("simulation: bad agent config")

// Observer learns what an Agent does, for the measures. Its methods are
// called from many goroutines at once and must not block for long.
type Observer interface {
	// Published: node published message id.
	Published(node int, id uint64)
	// Received: node received a copy of id from peer from, hop links
	// away from its origin; first is false for a duplicate.
	Received(node int, id uint64, from peer.ID, hop int, first bool)
	// Sent: the copy of id node sent to peer to is over: err nil if
	// to acknowledged it, else why it was not written or acknowledged.
	Sent(node int, id uint64, to peer.ID, err error)
	// Request: one request of node is over.
	Request(node int, r RequestOutcome)
	// Bulk: one bulk transfer of node is over (err nil: the receiver
	// acknowledged every byte).
	Bulk(node int, bytes int64, took time.Duration, err error)
	// FloodOpened: an attacker opened one more stream at a victim.
	FloodOpened(node int, victim peer.ID)
}

// RequestOutcome is one request as its sender saw it.
type RequestOutcome struct {
	Strategy string
	// Candidates are the peers SelectBest chose among (its linked
	// peers), Peer the one it picked (zero if none).
	Candidates []peer.ID
	Peer       peer.ID
	Latency    time.Duration
	Err        error
}

// AgentConfig sets up an Agent.
type AgentConfig struct {
	// Node names this agent in message IDs and to the Observer;
	// Incarnation tells a restarted node's messages from its earlier
	// ones (both below 2²⁴ and 2¹² respectively).
	Node, Incarnation int
	// Seed decides the agent's own random draws (publication times, bulk
	// peers, the strategies' draws).
	Seed uint64
	// Workload is what to run; Role is "" for an honest node, "flood"
	// for an attacker, "squat" for a squatter (which registers nothing
	// and runs nothing).
	Workload *WorkloadSpec
	Role     string
	// Begin is the scenario's start, from which the workloads' Start
	// and the end (Begin + Duration) count; Duration 0 runs until Close.
	Begin    time.Time
	Duration time.Duration
	// Clock is the agent's time source (clock.Real() if nil: virtual time
	// in a synctest bubble).
	Clock    clock.Clock
	Observer Observer
}

// Agent runs the workloads of one node on its ConnectionManager, through
// the manager's public API only: it serves the protocols, publishes and
// forwards gossip, sends requests through SelectBest and bulk transfers.
// It knows nothing of the other nodes but their peer IDs, so that one
// process running one node over TCP can run it too.
type Agent struct {
	m    *peerlink.ConnectionManager
	cfg  AgentConfig
	w    WorkloadSpec
	clk  clock.Clock
	obs  Observer
	slow bool

	strategies []balancer.Strategy // Requests.Strategies, in order
	reqCount   atomic.Uint64
	srv        *capacity // nil: Requests.Concurrency 0, no limit

	seenMu sync.Mutex
	seen   map[uint64]struct{}
	// seenRing holds the IDs in seen in the order they came, so that the
	// oldest is forgotten past maxSeen: peers can send any number of
	// IDs, and a node that runs for days must not keep them all.
	seenRing []uint64
	seenNext int
	pubs     uint64 // messages published so far
	gossip   gossipState

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// NewAgent registers the workload's handlers on m; Start starts its
// loops.
func NewAgent(m *peerlink.ConnectionManager, cfg AgentConfig) (*Agent, error) {
	if cfg.Node < 0 || cfg.Node >= 1<<24 || cfg.Incarnation < 0 || cfg.Incarnation >= 1<<12 {
		return nil, fmt.Errorf("%w: Node %d, Incarnation %d: want [0, 2²⁴) and [0, 2¹²)", ErrAgent, cfg.Node, cfg.Incarnation)
	}
	if cfg.Workload == nil {
		return nil, fmt.Errorf("%w: Workload is nil", ErrAgent)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	a := &Agent{m: m, cfg: cfg, w: *cfg.Workload, clk: cfg.Clock, obs: cfg.Observer, seen: make(map[uint64]struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if r := a.w.Requests; r != nil {
		a.slow = slices.Contains(r.SlowNodes, cfg.Node)
		if r.Concurrency > 0 {
			a.srv = newCapacity(a.clk, r.Concurrency, r.Queue)
		}
		for k, s := range r.Strategies {
			a.strategies = append(a.strategies, newStrategy(s, mix(cfg.Seed^uint64(k+1)), r.P2CChoices))
		}
	}
	if cfg.Role == "squat" {
		return a, nil
	}
	if a.w.Gossip != nil {
		if err := m.SetStreamHandler(GossipProtocol, a.serveGossip); err != nil {
			return nil, err
		}
	}
	if a.w.Requests != nil || a.w.Flood != nil {
		if err := m.SetStreamHandler(RequestProtocol, a.serveRequest); err != nil {
			return nil, err
		}
	}
	if a.w.Bulk != nil {
		if err := m.SetStreamHandler(BulkProtocol, a.serveBulk); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// newStrategy returns the balancer strategy a name in
// RequestSpec.Strategies stands for (P2C drawing choices candidates).
func newStrategy(name string, seed uint64, choices int) balancer.Strategy {
	switch name {
	case StrategyHighestScore:
		return balancer.NewHighestScore()
	case StrategyRandom:
		return &randomStrategy{seed: seed}
	}
	return balancer.NewP2C(balancer.P2COptions{Seed: seed, Choices: choices})
}

// Start starts the agent's loops (publisher, requester, bulk sender,
// flooder, as its workload and role say).
func (a *Agent) Start() {
	switch a.cfg.Role {
	case "squat":
		return
	case "flood":
		a.goOwned(a.flood)
		return
	}
	if g := a.w.Gossip; g != nil && g.Rate > 0 {
		a.goOwned(func() { a.poisson(1, g.Rate, g.Start.D(), a.cfg.Duration-g.Settle.D(), a.publishNext) })
	}
	if r := a.w.Requests; r != nil && r.Rate > 0 {
		a.goOwned(func() { a.poisson(2, r.Rate, r.Start.D(), a.cfg.Duration, a.request) })
	}
	if b := a.w.Bulk; b != nil && slices.Contains(b.Nodes, a.cfg.Node) {
		a.goOwned(a.bulkLoop)
	}
}

// Close stops the loops and waits for every goroutine the agent started;
// streams in flight are reset. The manager's handlers may still run: they
// start nothing once the agent is closed.
func (a *Agent) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}

// goOwned runs f in a goroutine Close waits for, unless the agent is
// closed.
func (a *Agent) goOwned(f func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Go(f)
	return true
}

// sleepUntil waits on the agent's clock; false if the agent closed first.
func (a *Agent) sleepUntil(t time.Time) bool {
	d := t.Sub(a.clk.Now())
	if d <= 0 {
		return a.ctx.Err() == nil
	}
	tm := a.clk.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C():
		return true
	case <-a.ctx.Done():
		return false
	}
}

// poisson calls f at the events of a Poisson process of rate per second
// from Begin+start to Begin+end (end ≤ 0: until Close), drawn from the
// agent's seed and stream (so that a node's draws do not depend on
// other goroutines).
func (a *Agent) poisson(stream uint64, rate float64, start, end time.Duration, f func()) {
	r := rand.New(rand.NewPCG(a.cfg.Seed, mix(stream<<32^uint64(a.cfg.Incarnation))))
	t := a.cfg.Begin.Add(start)
	if now := a.clk.Now(); t.Before(now) {
		t = now // a restarted node starts at once
	}
	for {
		t = t.Add(time.Duration(r.ExpFloat64() / rate * float64(time.Second)))
		if end > 0 && !t.Before(a.cfg.Begin.Add(end)) {
			return
		}
		if !a.sleepUntil(t) {
			return
		}
		f()
	}
}

// --- gossip (gossip.go) and stream exchanges ---

// messageID packs the origin node, its incarnation and its sequence.
func messageID(node, inc int, seq uint64) uint64 {
	return uint64(node)<<40 | uint64(inc)<<28 | seq&(1<<28-1)
}

// MessageOrigin returns the node that published message id.
func MessageOrigin(id uint64) int { return int(id >> 40) }

// timeout bounds one stream exchange of the agent.
func (a *Agent) timeout() time.Duration {
	if r := a.w.Requests; r != nil {
		return r.Timeout.D()
	}
	return 10 * time.Second
}

// exchange opens a stream to p without dialing, writes msg, half-closes
// and reads a reply of want bytes, all by deadline.
func (a *Agent) exchange(p peer.ID, protocol string, prio mux.Priority, msg []byte, want int, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(peerlink.WithNoDial(a.ctx), deadline)
	defer cancel()
	s, err := a.m.OpenStream(ctx, p, protocol, prio)
	if err != nil {
		return err
	}
	// Close resets a stream still open when the agent closes, so that
	// Close never waits for a deadline.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	_ = s.SetDeadline(deadline)
	if _, err := s.WriteContext(ctx, msg); err != nil {
		_ = s.Reset()
		return err
	}
	if err := s.Close(); err != nil {
		_ = s.Reset()
		return err
	}
	if _, err := io.CopyN(io.Discard, s, int64(want)); err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		return err
	}
	return nil
}

// --- requests ---

// requestHeader: the response's size, the request body's.
const requestHeader = 4 + 4

// request sends one request to a peer the next strategy in turn picks.
func (a *Agent) request() {
	r := a.w.Requests
	k := int(a.reqCount.Add(1)-1) % len(a.strategies)
	out := RequestOutcome{Strategy: r.Strategies[k], Candidates: a.m.Peers()}
	start := a.clk.Now()
	sel, err := a.m.SelectBest(a.ctx, out.Candidates, peerlink.WithStrategy(a.strategies[k]))
	if err != nil {
		out.Err = err
		a.obs.Request(a.cfg.Node, out)
		return
	}
	out.Peer = sel.Peer
	msg := make([]byte, requestHeader+r.Size)
	binary.BigEndian.PutUint32(msg, uint32(r.ResponseSize))
	binary.BigEndian.PutUint32(msg[4:], uint32(r.Size))
	ok := a.goOwned(func() {
		out.Err = a.exchange(sel.Peer, RequestProtocol, priority(r.Priority, mux.PriorityNormal), msg, r.ResponseSize, start.Add(r.Timeout.D()))
		if errors.Is(out.Err, io.EOF) {
			// The server closed the stream without an answer: the one
			// way it says its queue is full (serveRequest).
			out.Err = fmt.Errorf("%w (%s)", ErrOverloaded, sel.Peer)
		}
		out.Latency = a.clk.Now().Sub(start)
		sel.Done(out.Err, out.Latency)
		a.obs.Request(a.cfg.Node, out)
	})
	if !ok {
		sel.Done(ErrClosed, 0)
	}
}

func (a *Agent) serveRequest(s *mux.Stream) {
	r := a.w.Requests
	timeout, service, respSize := 2*time.Second, time.Duration(0), 0
	if r != nil {
		timeout, service = r.Timeout.D(), r.ServiceTime.D()
		if a.slow {
			service = r.SlowServiceTime.D()
		}
	}
	deadline := a.clk.Now().Add(timeout)
	_ = s.SetDeadline(deadline)
	var h [requestHeader]byte
	if _, err := io.ReadFull(s, h[:]); err != nil {
		_ = s.Reset()
		return
	}
	respSize = int(binary.BigEndian.Uint32(h[:]))
	body := int64(binary.BigEndian.Uint32(h[4:]))
	if body > maxMessageSize || respSize > maxMessageSize {
		_ = s.Reset()
		return
	}
	if _, err := io.CopyN(io.Discard, s, body); err != nil {
		_ = s.Reset()
		return
	}
	if a.srv != nil {
		switch err := a.srv.acquire(s.Context(), deadline); {
		case errors.Is(err, ErrOverloaded):
			_ = s.Close() // no answer: the requester reads EOF
			return
		case err != nil:
			_ = s.Reset()
			return
		}
		defer a.srv.release()
	}
	if service > 0 {
		t := a.clk.NewTimer(service)
		select {
		case <-t.C():
		case <-s.Context().Done():
			t.Stop()
			return
		}
	}
	_, _ = s.Write(make([]byte, respSize))
}

// --- bulk ---

// bulkLoop sends transfers one after another to random linked peers.
func (a *Agent) bulkLoop() {
	b := a.w.Bulk
	r := rand.New(rand.NewPCG(a.cfg.Seed, mix(3<<32^uint64(a.cfg.Incarnation))))
	if !a.sleepUntil(a.cfg.Begin.Add(b.Start.D())) {
		return
	}
	chunk := make([]byte, b.Chunk)
	for a.ctx.Err() == nil {
		peers := a.m.Peers()
		if len(peers) == 0 {
			if !a.sleepUntil(a.clk.Now().Add(time.Second)) {
				return
			}
			continue
		}
		p := peers[r.IntN(len(peers))]
		start := a.clk.Now()
		err := a.transfer(p, b, chunk)
		a.obs.Bulk(a.cfg.Node, b.Size, a.clk.Now().Sub(start), err)
		if err != nil && !a.sleepUntil(a.clk.Now().Add(time.Second)) {
			return
		}
	}
}

func (a *Agent) transfer(p peer.ID, b *BulkSpec, chunk []byte) error {
	s, err := a.m.OpenStream(peerlink.WithNoDial(a.ctx), p, BulkProtocol, priority(b.Priority, mux.PriorityLow))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(a.ctx, func() { _ = s.Reset() })
	defer stop()
	var h [8]byte
	binary.BigEndian.PutUint64(h[:], uint64(b.Size))
	if _, err := s.Write(h[:]); err != nil {
		_ = s.Reset()
		return err
	}
	for left := b.Size; left > 0; {
		n := min(left, int64(len(chunk)))
		if _, err := s.Write(chunk[:n]); err != nil {
			_ = s.Reset()
			return err
		}
		left -= n
	}
	if err := s.Close(); err != nil {
		return err
	}
	if _, err := io.ReadFull(s, h[:]); err != nil {
		_ = s.Reset()
		return err
	}
	if got := int64(binary.BigEndian.Uint64(h[:])); got != b.Size {
		return fmt.Errorf("simulation: bulk receiver acknowledged %d of %d bytes", got, b.Size)
	}
	return nil
}

func (a *Agent) serveBulk(s *mux.Stream) {
	var h [8]byte
	if _, err := io.ReadFull(s, h[:]); err != nil {
		return
	}
	size := int64(binary.BigEndian.Uint64(h[:]))
	n, err := io.CopyN(io.Discard, s, size)
	if err != nil {
		_ = s.Reset()
		return
	}
	binary.BigEndian.PutUint64(h[:], uint64(n))
	_, _ = s.Write(h[:])
}

// --- flood ---

// flood opens request streams at every linked peer as fast as the peer
// lets it: each announces a body that never comes, and holds its slot
// until the victim gives up on it.
func (a *Agent) flood() {
	if !a.sleepUntil(a.cfg.Begin.Add(a.w.Flood.Start.D())) {
		return
	}
	for _, p := range a.m.Peers() {
		a.goOwned(func() { a.floodPeer(p) })
	}
}

func (a *Agent) floodPeer(p peer.ID) {
	var h [requestHeader]byte
	binary.BigEndian.PutUint32(h[:], 1)
	binary.BigEndian.PutUint32(h[4:], maxMessageSize)
	ctx := peerlink.WithNoDial(a.ctx)
	for a.ctx.Err() == nil {
		s, err := a.m.OpenStream(ctx, p, RequestProtocol, mux.PriorityNormal)
		if err == nil {
			_, err = s.Write(h[:])
		}
		if err != nil {
			if s != nil {
				_ = s.Reset()
			}
			// The link is gone or refuses: try again a little later
			// rather than spin.
			if !a.sleepUntil(a.clk.Now().Add(100 * time.Millisecond)) {
				return
			}
			continue
		}
		a.obs.FloodOpened(a.cfg.Node, p)
		if !a.goOwned(func() { a.hold(s) }) {
			_ = s.Reset()
			return
		}
	}
}

// hold keeps an attacker's stream open until the victim ends it.
func (a *Agent) hold(s *mux.Stream) {
	stop := context.AfterFunc(a.ctx, func() { _ = s.Reset() })
	defer stop()
	_, _ = io.Copy(io.Discard, s)
	_ = s.Reset()
}

// randomStrategy picks uniformly among the eligible candidates: the
// baseline the others are judged against.
type randomStrategy struct {
	seed uint64
	n    atomic.Uint64
}

func (*randomStrategy) Name() string { return StrategyRandom }

func (r *randomStrategy) Pick(cands []balancer.Candidate, _ []byte) (int, error) {
	eligible := 0
	for i := range cands {
		if cands[i].Eligible() {
			eligible++
		}
	}
	if eligible == 0 {
		return -1, balancer.ErrNoCandidate
	}
	k := int(mix(r.seed^r.n.Add(1)) % uint64(eligible))
	for i := range cands {
		if cands[i].Eligible() {
			if k == 0 {
				return i, nil
			}
			k--
		}
	}
	return -1, balancer.ErrNoCandidate
}

type nopObserver struct{}

func (nopObserver) Published(int, uint64)                    {}
func (nopObserver) Received(int, uint64, peer.ID, int, bool) {}
func (nopObserver) Sent(int, uint64, peer.ID, error)         {}
func (nopObserver) Request(int, RequestOutcome)              {}
func (nopObserver) Bulk(int, int64, time.Duration, error)    {}
func (nopObserver) FloodOpened(int, peer.ID)                 {}

// isTimeoutErr reports whether err is a deadline's.
func isTimeoutErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}
