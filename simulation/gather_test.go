package simulation

import (
	"errors"
	"testing"
	"time"

	"github.com/peerlink/peerlink/clock"
)

// TestGatherReplaysLogs gathers hand-made logs of three nodes linked in
// a line, 0–1–2: a message from 0 reaches both others, one from 2 never
// reaches 0, and the third edge of the mesh never comes up.
func TestGatherReplaysLogs(t *testing.T) {
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	link := func(at, peer int) NodeEvent {
		return NodeEvent{At: ms(at), Kind: NodeEventConnected, Peer: peer, Dir: "outbound"}
	}
	const a, b = 1, 2<<40 | 1
	results := []*NodeResult{
		{Node: 0, Ended: ms(10_000), Events: []NodeEvent{
			link(100, 1),
			{At: ms(1000), Kind: NodeEventPublished, Peer: -1, Msg: a},
			{At: ms(1030), Kind: NodeEventReceived, Peer: 1, Msg: a, Hop: 2, Dup: true},
			{At: ms(1500), Kind: NodeEventRequest, Peer: 1, Strategy: StrategyP2C, Latency: ms(7)},
			{At: ms(1600), Kind: NodeEventRequest, Peer: -1, Strategy: StrategyRandom, Cause: "no_candidate"},
			{At: ms(1700), Kind: NodeEventSendFailed, Peer: 1, Msg: a, Cause: "timeout"},
		}},
		{Node: 1, Ended: ms(10_000), Events: []NodeEvent{
			link(100, 0), link(100, 2),
			{At: ms(1010), Kind: NodeEventReceived, Peer: 0, Msg: a, Hop: 1},
			{At: ms(2010), Kind: NodeEventReceived, Peer: 2, Msg: b, Hop: 1},
		}},
		{Node: 2, Ended: ms(10_000), Events: []NodeEvent{
			link(100, 1),
			{At: ms(1020), Kind: NodeEventReceived, Peer: 1, Msg: a, Hop: 2},
			{At: ms(2000), Kind: NodeEventPublished, Peer: -1, Msg: b},
			{At: ms(11_000), Kind: NodeEventDisconnected, Peer: 1, Cause: "manager shutdown"}, // after the end: left out
		}},
	}
	g, err := FullMesh(3)
	if err != nil {
		t.Fatal(err)
	}
	sc := Scenario{Nodes: 3, Duration: Duration(10 * time.Second), Workload: &WorkloadSpec{
		Gossip:   &GossipSpec{Rate: 1, Fanout: 2, Settle: Duration(time.Second)},
		Requests: &RequestSpec{Rate: 1},
	}}
	res, err := Gather(sc, g, results)
	if err != nil {
		t.Fatal(err)
	}
	gs := res.Gossip
	if gs.Counted != 2 || gs.Complete != 1 || len(gs.Messages) != 2 || gs.Messages[0].To100 != ms(20) || gs.Messages[0].Target != 3 ||
		gs.Messages[1].Reached != 2 || gs.LastHopMax != 2 {
		t.Errorf("gossip: %+v", gs)
	}
	if gs.SendErrors != 1 {
		t.Errorf("gossip send errors %d, want the 1 logged", gs.SendErrors)
	}
	if res.TraceLen != 4 || res.FullyConnected || res.Samples[len(res.Samples)-1].EdgesUp != 2 {
		t.Errorf("links: %d records, fully connected %v, last sample %+v", res.TraceLen, res.FullyConnected, res.Samples[len(res.Samples)-1])
	}
	if r := res.Requests; r.Sent != 2 || r.OK != 1 || r.Errors["no_candidate"] != 1 || r.Latency.P50 != ms(7) {
		t.Errorf("requests: %+v", r)
	}
	// The one answered P2C request went to node 1: the whole load, not
	// judged (no true latency).
	for _, q := range res.Selection {
		if q.Strategy == StrategyP2C && (q.Picks != 0 || q.BusiestShare != 1) {
			t.Errorf("p2c selection: %+v, want no pick judged and node 1 the busiest (share 1)", q)
		}
	}

	if _, err := Gather(sc, g, results[:2]); !errors.Is(err, ErrGather) {
		t.Errorf("two results for three nodes: %v, want ErrGather", err)
	}
	// A node without results is down from the start: not counted
	// against the messages.
	res, err = Gather(sc, g, []*NodeResult{results[0], results[1], nil})
	if err != nil {
		t.Fatal(err)
	}
	if gs := res.Gossip; gs.Counted != 1 || gs.Complete != 1 || gs.Messages[0].Target != 2 {
		t.Errorf("node 2 missing: %+v", gs)
	}
}

func TestNodeLogBounded(t *testing.T) {
	l := newNodeLog(NodeConfig{MaxEvents: 3}, clock.NewFake(time.Unix(0, 0)))
	for i := range 5 {
		l.Published(0, uint64(i))
	}
	if len(l.events) != 3 || l.dropped != 2 || l.events[2].Msg != 2 {
		t.Errorf("%d events kept, %d dropped; want the first 3 and 2", len(l.events), l.dropped)
	}
}

// BenchmarkGather measures Gather on the logs of 10 fully meshed nodes
// where each of 1,000 messages reaches every node with a duplicate: the
// cost of replaying a run's results into a Result.
func BenchmarkGather(b *testing.B) {
	const n, msgs = 10, 1000
	results := make([]*NodeResult, n)
	for i := range results {
		r := &NodeResult{Node: i, Ended: Duration(time.Hour)}
		for j := range n {
			if j != i {
				r.Events = append(r.Events, NodeEvent{At: 1, Kind: NodeEventConnected, Peer: j})
			}
		}
		results[i] = r
	}
	events := 0
	for k := range msgs {
		origin, at := k%n, Duration(time.Second+time.Duration(k)*time.Millisecond)
		id := messageID(origin, 1, uint64(k+1))
		results[origin].Events = append(results[origin].Events, NodeEvent{At: at, Kind: NodeEventPublished, Peer: -1, Msg: id})
		for j := range n {
			if j != origin {
				results[j].Events = append(results[j].Events,
					NodeEvent{At: at + Duration(j+1), Kind: NodeEventReceived, Peer: origin, Msg: id, Hop: 1},
					NodeEvent{At: at + Duration(2*j+2), Kind: NodeEventReceived, Peer: origin, Msg: id, Hop: 2, Dup: true})
			}
		}
	}
	for _, r := range results {
		events += len(r.Events)
	}
	g, err := FullMesh(n)
	if err != nil {
		b.Fatal(err)
	}
	sc := Scenario{Nodes: n, Duration: Duration(time.Hour), Workload: &WorkloadSpec{Gossip: &GossipSpec{Rate: 1}}}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Gather(sc, g, results)
		if err != nil || res.Gossip.Complete != msgs {
			b.Fatalf("%v; %d of %d messages complete", err, res.Gossip.Complete, msgs)
		}
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
