package simulation

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// ModeLocal is Result.Mode for a run of real node processes (Gather).
const ModeLocal = "local"

// ErrGather is wrapped by Gather's errors about its input.
var ErrGather = errors.New("simulation: cannot gather node results")

// Gather merges the results of a run's nodes (RunNode, one per process)
// into one Result with the simulator's measures: connectivity over time
// from the nodes' connection events, and the workload's measures from
// their logs replayed in time order into the same observer that measures
// a simulated run. sc describes the run (Nodes, Seed, Duration,
// SampleEvery, Workload: Faults are ignored, a real run has none) and g
// is the topology the nodes were configured as. results[i] is node i's;
// nil for a node whose results are missing (it counts as down from the
// start for the gossip measures).
//
// The nodes' clocks must agree: their times are from the shared
// NodeConfig.Start, and a message received before it was published (a
// skewed clock) is not counted. Events after Duration (the shutdown's)
// are left out.
//
// What a real network cannot tell is left out rather than guessed: no
// true latency is known, so Selection has no best-pick share nor regret
// (Picks 0) and Scores is empty; TraceHash fingerprints the events but
// does not repeat from run to run.
func Gather(sc Scenario, g Graph, results []*NodeResult) (*Result, error) {
	sc = sc.withDefaults()
	switch {
	case len(results) != sc.Nodes:
		return nil, fmt.Errorf("%w: %d results for %d nodes", ErrGather, len(results), sc.Nodes)
	case g.N != sc.Nodes:
		return nil, fmt.Errorf("%w: a graph of %d nodes for %d", ErrGather, g.N, sc.Nodes)
	}
	for i, r := range results {
		if r != nil && r.Node != i {
			return nil, fmt.Errorf("%w: results[%d] are node %d's", ErrGather, i, r.Node)
		}
	}
	end := sc.Duration.D()
	evs := mergeLogs(results, end)

	res := &Result{
		Scenario: sc.Name, Seed: sc.Seed, Nodes: sc.Nodes, Edges: len(g.Edges()), Duration: sc.Duration, Mode: ModeLocal,
	}
	var trace []Record
	for _, e := range evs {
		if r, ok := e.record(); ok {
			trace = append(trace, r)
		}
	}
	slices.SortFunc(trace, compareRecords)
	res.TraceHash, res.TraceLen, res.trace = fmt.Sprintf("%016x", TraceHash(trace)), len(trace), trace
	newReplay(g, res).run(trace, sc.SampleEvery.D(), end)

	var heap, stacks, rss int64
	var goroutines int
	var cpu time.Duration
	n := 0
	for _, r := range results {
		if r == nil {
			continue
		}
		n++
		res.DroppedEvents += r.DroppedEvents + r.LostEvents
		heap, stacks, rss = heap+r.Process.Heap, stacks+r.Process.Stacks, rss+r.Process.MaxRSS
		goroutines += r.Process.Goroutines
		cpu += r.Process.CPU.D()
		res.BreakerOpenings += int64(r.Stats.CircuitsOpened)
		res.Trims += int64(r.Stats.LinksClosed[peerlink.ReasonTrimmed.String()])
	}
	if n > 0 {
		res.HeapPerNode, res.StackPerNode, res.RSSPerNode = heap/int64(n), stacks/int64(n), rss/int64(n)
		res.GoroutinesPerNode = float64(goroutines) / float64(n)
		res.CPUPerNode = Duration(cpu / time.Duration(n))
	}

	if sc.Workload != nil {
		w := newLogWorld(results, end)
		o := newWorldObserver(w, sc)
		for i, t := range w.ended {
			if t < end {
				o.nodeDown(i, t)
			}
		}
		for _, e := range evs {
			w.now = e.At.D()
			w.apply(e)
			e.feed(o)
		}
		o.fill(res)
	}
	return res, nil
}

// nodeEvent is a NodeEvent in its node's log, the node that logged it,
// and its order among the events of one instant: links before the
// workload, then by node, then in the node's order. Small, so that
// sorting a run's events moves little.
type nodeEvent struct {
	*NodeEvent
	node  int
	order uint64 // workload bit 62, node from bit 36, place in the log
}

// mergeLogs returns the nodes' events up to end in time order; at one
// instant, links before the workload (a message published as a link
// comes up counts it), then by node and in each node's order.
func mergeLogs(results []*NodeResult, end time.Duration) []nodeEvent {
	var evs []nodeEvent
	for i, r := range results {
		if r == nil {
			continue
		}
		for k := range r.Events {
			e := &r.Events[k]
			if e.At.D() > end {
				continue
			}
			var work uint64
			if e.Kind != NodeEventConnected && e.Kind != NodeEventDisconnected {
				work = 1
			}
			evs = append(evs, nodeEvent{e, i, work<<62 | uint64(i)<<36 | uint64(k)})
		}
	}
	slices.SortFunc(evs, func(a, b nodeEvent) int { return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.order, b.order)) })
	return evs
}

// reasons maps a DisconnectReason's name back to it.
var reasons = func() map[string]peerlink.DisconnectReason {
	m := make(map[string]peerlink.DisconnectReason)
	for r := range 256 {
		m[peerlink.DisconnectReason(r).String()] = peerlink.DisconnectReason(r)
	}
	return m
}()

// record returns e as a trace record, if it is a connection event.
func (e nodeEvent) record() (Record, bool) {
	r := Record{At: e.At.D(), Node: e.node, Inc: 1, Peer: e.Peer}
	switch e.Kind {
	case NodeEventConnected:
		r.Kind = KindConnected
	case NodeEventDisconnected:
		r.Kind, r.Reason = KindDisconnected, reasons[e.Cause]
	default:
		return Record{}, false
	}
	switch e.Dir {
	case transport.Inbound.String():
		r.Dir = uint8(transport.Inbound)
	case transport.Outbound.String():
		r.Dir = uint8(transport.Outbound)
	}
	return r, true
}

// feed reports e to the observer as the agent did.
func (e nodeEvent) feed(o *observer) {
	switch e.Kind {
	case NodeEventPublished:
		o.Published(e.node, e.Msg)
	case NodeEventReceived:
		o.Received(e.node, e.Msg, peer.ID{}, e.Hop, !e.Dup)
	case NodeEventRequest:
		// The picked peer counts the server's load; with no true latency
		// (logWorld.truth) the pick is not judged.
		out := RequestOutcome{Strategy: e.Strategy, Latency: e.Latency.D(), Err: causeErr(e.Cause)}
		if e.Peer >= 0 {
			out.Peer = logPeerID(e.Peer)
		}
		o.Request(e.node, out)
	case NodeEventSendFailed:
		err := causeErr(e.Cause)
		if err == nil {
			err = errSendFailed
		}
		o.Sent(e.node, e.Msg, logPeerID(max(e.Peer, 0)), err)
	case NodeEventBulk:
		var err error
		if e.Cause != "" {
			err = errBulkFailed
		}
		o.Bulk(e.node, e.Bytes, e.Latency.D(), err)
	}
}

var (
	errBulkFailed = errors.New("simulation: bulk transfer failed")
	errSendFailed = errors.New("simulation: gossip copy not acknowledged")
)

// causeErr returns an error errorCause names cause ("" for nil): a
// logged request's outcome, told to the observer again.
func causeErr(cause string) error {
	switch cause {
	case "":
		return nil
	case "timeout":
		return context.DeadlineExceeded
	case "no_candidate":
		return balancer.ErrNoCandidate
	case "stream_limit":
		return mux.ErrStreamLimit
	case "reset":
		return mux.ErrStreamReset
	case "closed":
		return ErrClosed
	}
	return fmt.Errorf("simulation: request failed: %s", cause)
}

// logWorld is the observer's world replayed from the nodes' logs: the
// links each node reported up at the current event's time.
type logWorld struct {
	now   time.Duration
	view  []map[int]bool // node → peers it reports linked
	ended []time.Duration
}

func newLogWorld(results []*NodeResult, end time.Duration) *logWorld {
	w := &logWorld{view: make([]map[int]bool, len(results)), ended: make([]time.Duration, len(results))}
	for i, r := range results {
		w.view[i] = make(map[int]bool)
		if r == nil {
			continue // ended at 0: down from the start
		}
		w.ended[i] = min(r.Ended.D(), end+1)
	}
	return w
}

func (w *logWorld) apply(e nodeEvent) {
	if e.Peer < 0 || e.Peer >= len(w.view) {
		return
	}
	switch e.Kind {
	case NodeEventConnected:
		w.view[e.node][e.Peer] = true
	case NodeEventDisconnected:
		delete(w.view[e.node], e.Peer)
	}
}

func (w *logWorld) up(i int) bool { return w.now < w.ended[i] }

func (w *logWorld) Elapsed() time.Duration { return w.now }
func (w *logWorld) Node(id peer.ID) (int, bool) {
	j := int(binary.BigEndian.Uint32(id[:])) - 1
	if j < 0 || j >= len(w.view) || id != logPeerID(j) {
		return 0, false
	}
	return j, true
}

// logPeerID stands for node j in a replayed RequestOutcome (the logs name
// nodes by index); logWorld.Node maps it back.
func logPeerID(j int) peer.ID {
	var id peer.ID
	binary.BigEndian.PutUint32(id[:], uint32(j)+1)
	return id
}

func (w *logWorld) role(int) string                      { return "" }
func (w *logWorld) isVictim(int) bool                    { return false }
func (w *logWorld) truth(int, int) (time.Duration, bool) { return 0, false }

func (w *logWorld) component(origin int, target []uint64) {
	markComponent(origin, target, func(i int, add func(j int)) {
		for j := range w.view[i] {
			if w.up(j) {
				add(j)
			}
		}
	})
}
