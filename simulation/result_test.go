package simulation

import (
	"slices"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
)

// At one instant a node reports its old link to a peer replaced and the
// new one connected; the trace must keep that order whatever order it
// was sorted from, or the replay would think the edge down.
func TestReplayKeepsCausalOrder(t *testing.T) {
	g := Graph{N: 2, Adj: [][]int{{1}, {0}}}
	at := 40 * time.Second
	arrived := []Record{
		{At: time.Second, Kind: KindConnected, Node: 0, Inc: 1, Peer: 1},
		{At: time.Second, Kind: KindConnected, Node: 1, Inc: 1, Peer: 0},
		{At: at, Kind: KindConnected, Node: 0, Inc: 1, Peer: 1},
		{At: at, Kind: KindDisconnected, Node: 1, Inc: 1, Peer: 0, Reason: peerlink.ReasonReplaced},
		{At: at, Kind: KindConnected, Node: 1, Inc: 1, Peer: 0},
	}
	for k := range arrived {
		arrived[k].seq = uint64(k)
	}
	// Sorting must give the same trace from any arrival order of the
	// records about different nodes or peers.
	shuffled := []Record{arrived[1], arrived[0], arrived[3], arrived[4], arrived[2]}
	a, b := slices.Clone(arrived), shuffled
	slices.SortFunc(a, compareRecords)
	slices.SortFunc(b, compareRecords)
	if TraceHash(a) != TraceHash(b) {
		t.Fatal("the same records in another arrival order hash differently")
	}
	res := &Result{}
	newReplay(g, res).run(a, 10*time.Second, time.Minute)
	if last := res.Samples[len(res.Samples)-1]; last.EdgesUp != 1 {
		t.Fatalf("edge down after a replacement: %+v", last)
	}
}
