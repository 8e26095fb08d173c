package simulation_test

import (
	"context"
	"fmt"
	"time"

	"github.com/peerlink/peerlink/simulation"
)

func ExampleParseScenario() {
	sc, err := simulation.ParseScenario([]byte(`{
		"name": "small", "nodes": 20, "degree": 4, "duration": "1m", "seed": 7,
		"link": {"latency": "40ms", "spread": "20ms", "bandwidth": 12500000},
		"faults": [{"kind": "crash", "at": "20s", "for": "10s", "nodes": [3]}]
	}`))
	if err != nil {
		panic(err)
	}
	g, _ := sc.Graph()
	fmt.Println(sc.Name, sc.Nodes, "nodes,", len(g.Edges()), "edges, connected:", g.Connected())
	// Output: small 20 nodes, 40 edges, connected: true
}

func ExampleRandomRegular() {
	g, err := simulation.RandomRegular(1000, 8, 42)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(g.Edges()), g.Degree(0), g.Connected())
	// Output: 4000 8 true
}

// Run a scenario. In a test, run it inside synctest.Test with
// Options{Settle: synctest.Wait}: it then takes virtual time (a minute
// in a fraction of a second) and repeats itself from its seed. Outside a
// bubble, as here, it takes its Duration of real time.
func ExampleRun() {
	sc := simulation.Scenario{
		Nodes:    6,
		Degree:   2,
		Duration: simulation.Duration(3 * time.Second),
		Link:     simulation.LinkSpec{Latency: simulation.Duration(time.Millisecond)},
	}
	res, err := simulation.Run(context.Background(), sc, simulation.Options{})
	if err != nil {
		panic(err)
	}
	last := res.Samples[len(res.Samples)-1]
	fmt.Printf("%d of %d edges up; trace %s\n", last.EdgesUp, res.Edges, res.TraceHash)
}

// A scenario with a workload: gossip and requests over 10 nodes. Its
// Result reports delivery, propagation times, duplicates and, for each
// request strategy, how often it picked the truly fastest peer.
func ExampleWorkloadSpec() {
	sc := simulation.Scenario{
		Nodes:    10,
		Degree:   4,
		Duration: simulation.Duration(8 * time.Second),
		Link:     simulation.LinkSpec{Latency: simulation.Duration(5 * time.Millisecond), Spread: simulation.Duration(4 * time.Millisecond)},
		Workload: &simulation.WorkloadSpec{
			Gossip:   &simulation.GossipSpec{Rate: 0.2, Settle: simulation.Duration(time.Second)},
			Requests: &simulation.RequestSpec{Rate: 2},
		},
	}
	res, err := simulation.Run(context.Background(), sc, simulation.Options{
		Progress: func(p simulation.Progress) { _ = p.Delivery }, // e.g. a progress line
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("delivery %.0f %%; strategies judged: %d\n", 100*res.Gossip.Delivery, len(res.Selection))
}
