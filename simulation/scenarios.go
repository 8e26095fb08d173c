package simulation

import "time"

func d(x time.Duration) Duration { return Duration(x) }

// Shipped returns the shipped scenarios by name, as Go values; each is
// also scenarios/NAME.json. They are sized to run in the test suite in a
// synctest bubble in seconds; scale them up with Nodes and Duration (the
// faults name nodes and times: keep those in range).
func Shipped() map[string]Scenario {
	return map[string]Scenario{
		"baseline":           Baseline(),
		"churn":              Churn(),
		"partition-and-heal": PartitionAndHeal(),
		"degraded-peers":     DegradedPeers(),
		"stream-flood":       StreamFlood(),
		"bulk-plus-gossip":   BulkPlusGossip(),
		"squatters":          Squatters(),
		"heavy-load":         HeavyLoad(),
	}
}

// Baseline: 30 nodes of degree 8, no fault, gossip and requests: every
// message reaches every node, every request succeeds.
func Baseline() Scenario {
	return Scenario{
		Name: "baseline", Nodes: 30, Topology: TopologyRandomRegular, Degree: 8, Duration: d(30 * time.Second), Seed: 1,
		Link: LinkSpec{Latency: d(40 * time.Millisecond), Spread: d(20 * time.Millisecond), Jitter: d(5 * time.Millisecond), Bandwidth: 12_500_000},
		Workload: &WorkloadSpec{
			Gossip:   &GossipSpec{Rate: 0.03},
			Requests: &RequestSpec{Rate: 0.3},
		},
	}
}

// Churn: a small world under churn, a black hole and a degraded link,
// with gossip throughout.
func Churn() Scenario {
	return Scenario{
		Name: "churn", Nodes: 40, Topology: TopologySmallWorld, Degree: 6, Rewire: 0.2, Duration: d(130 * time.Second), Seed: 3,
		Link: LinkSpec{Latency: d(25 * time.Millisecond), Spread: d(10 * time.Millisecond), Jitter: d(3 * time.Millisecond), Bandwidth: 12_500_000},
		Faults: []Fault{
			{Kind: FaultChurn, At: d(10 * time.Second), For: d(90 * time.Second), Rate: 0.2, Down: d(8 * time.Second)},
			{Kind: FaultBlackHole, At: d(30 * time.Second), Nodes: []int{0, 1}},
			{Kind: FaultDegrade, At: d(40 * time.Second), Nodes: []int{2, 3}, Link: &LinkSpec{Latency: d(200 * time.Millisecond), Bandwidth: 125_000}},
		},
		Workload: &WorkloadSpec{Gossip: &GossipSpec{Rate: 0.005}},
	}
}

// PartitionAndHeal cuts 40 nodes in two for 20 s; gossip goes on within
// each side.
func PartitionAndHeal() Scenario {
	left := make([]int, 20)
	for i := range left {
		left[i] = i
	}
	return Scenario{
		Name: "partition-and-heal", Nodes: 40, Topology: TopologyRandomRegular, Degree: 6, Duration: d(60 * time.Second), Seed: 2,
		Link:     LinkSpec{Latency: d(30 * time.Millisecond), Spread: d(15 * time.Millisecond), Bandwidth: 12_500_000},
		Health:   HealthSpec{Interval: d(2 * time.Second), Timeout: d(time.Second), FailureThreshold: 2},
		Faults:   []Fault{{Kind: FaultPartition, At: d(10 * time.Second), For: d(20 * time.Second), Groups: [][]int{left}}},
		Workload: &WorkloadSpec{Gossip: &GossipSpec{Rate: 0.008}},
	}
}

// DegradedPeers: 4 of 20 nodes get 150 ms slower on every link at 10 s.
// Requests rotate P2C, highest score and random over the same peers, so
// that their picks can be judged against the true latencies.
func DegradedPeers() Scenario {
	return Scenario{
		Name: "degraded-peers", Nodes: 20, Topology: TopologyRandomRegular, Degree: 6, Duration: d(30 * time.Second), Seed: 5,
		Link:   LinkSpec{Latency: d(20 * time.Millisecond), Spread: d(10 * time.Millisecond), Jitter: d(2 * time.Millisecond), Bandwidth: 12_500_000},
		Faults: []Fault{{Kind: FaultDegradeNode, At: d(10 * time.Second), Nodes: []int{0, 1, 2, 3}, Link: &LinkSpec{Latency: d(75 * time.Millisecond)}}},
		Workload: &WorkloadSpec{
			Requests: &RequestSpec{Rate: 2, SlowNodes: []int{4, 5}, SlowServiceTime: d(100 * time.Millisecond)},
		},
	}
}

// HeavyLoad: degraded-peers under load, small enough for the test
// suite. Each node serves two requests at a time (Concurrency 2, 150 ms
// each: 13 a second), holds at most 8 more in line and refuses the rest,
// and sends 10 a second: 75 % of a server's capacity on average. A
// strategy that sends all of a node's requests to its best peer queues
// them there; the two slow nodes (450 ms: 4.4 a second) are overloaded
// by their share of random picks alone; two nodes get 75 ms slower on
// every link at 5 s. BenchmarkWorkload runs it at 100 nodes.
func HeavyLoad() Scenario {
	return Scenario{
		Name: "heavy-load", Nodes: 12, Topology: TopologyRandomRegular, Degree: 4, Duration: d(10 * time.Second), Seed: 9,
		Link:   LinkSpec{Latency: d(20 * time.Millisecond), Spread: d(10 * time.Millisecond), Jitter: d(2 * time.Millisecond), Bandwidth: 12_500_000},
		Faults: []Fault{{Kind: FaultDegradeNode, At: d(5 * time.Second), Nodes: []int{0, 1}, Link: &LinkSpec{Latency: d(75 * time.Millisecond)}}},
		Workload: &WorkloadSpec{
			Requests: &RequestSpec{
				Rate: 10, ServiceTime: d(150 * time.Millisecond), SlowNodes: []int{4, 5}, SlowServiceTime: d(450 * time.Millisecond),
				Concurrency: 2, Queue: 8,
			},
		},
	}
}

// StreamFlood: node 0 opens streams at its peers as fast as they let it,
// each announcing a request body that never comes; its victims must stay
// within their per-link limit and keep answering the honest nodes.
func StreamFlood() Scenario {
	return Scenario{
		Name: "stream-flood", Nodes: 16, Topology: TopologyRandomRegular, Degree: 4, Duration: d(20 * time.Second), Seed: 6,
		Link: LinkSpec{Latency: d(20 * time.Millisecond), Spread: d(5 * time.Millisecond), Bandwidth: 12_500_000},
		Workload: &WorkloadSpec{
			Requests: &RequestSpec{Rate: 2},
			Flood:    &FloodSpec{Nodes: []int{0}, Start: d(3 * time.Second)},
		},
	}
}

// BulkPlusGossip: two nodes send 512 KiB transfers at low priority over
// 1 MB/s links while every node gossips at high priority: the gossip
// must not wait behind the bulk.
func BulkPlusGossip() Scenario {
	return Scenario{
		Name: "bulk-plus-gossip", Nodes: 12, Topology: TopologyRandomRegular, Degree: 4, Duration: d(15 * time.Second), Seed: 7,
		Link: LinkSpec{Latency: d(20 * time.Millisecond), Spread: d(5 * time.Millisecond), Bandwidth: 1_000_000},
		Workload: &WorkloadSpec{
			Gossip: &GossipSpec{Rate: 0.5, Priority: "high"},
			Bulk:   &BulkSpec{Senders: 2, Size: 512 << 10},
		},
	}
}

// Squatters: 4 of 24 nodes link to every honest node beyond their own
// edges and never do useful work (they serve no request); the honest
// nodes trim past 6 links down to 5, by score, which their requests to
// each other earn and the squatters' refusals lose.
func Squatters() Scenario {
	return Scenario{
		Name: "squatters", Nodes: 24, Topology: TopologyRandomRegular, Degree: 4, Duration: d(40 * time.Second), Seed: 8,
		Link: LinkSpec{Latency: d(20 * time.Millisecond), Spread: d(10 * time.Millisecond), Bandwidth: 12_500_000},
		Workload: &WorkloadSpec{
			Requests:  &RequestSpec{Rate: 1},
			Squatters: []int{20, 21, 22, 23},
			Trim:      &TrimSpec{HighWater: 6, LowWater: 5, GracePeriod: d(5 * time.Second), SilencePeriod: d(2 * time.Second)},
		},
	}
}

// Default is what cmd/peersim runs with no flags: 100 nodes of degree 8
// for 60 s, gossip (about 100 messages) and requests, under churn. It
// takes about 26 s of wall time on 2 cores in a synctest bubble; gossip
// is what costs (a stream and an acknowledgement per copy sent).
func Default() Scenario {
	return Scenario{
		Name: "default", Nodes: 100, Topology: TopologyRandomRegular, Degree: 8, Duration: d(60 * time.Second), Seed: 1,
		Link:   LinkSpec{Latency: d(40 * time.Millisecond), Spread: d(20 * time.Millisecond), Jitter: d(5 * time.Millisecond), Bandwidth: 12_500_000},
		Health: HealthSpec{Interval: d(2 * time.Second), Timeout: d(time.Second), FailureThreshold: 2},
		Faults: []Fault{{Kind: FaultChurn, At: d(10 * time.Second), For: d(40 * time.Second), Rate: 0.2, Down: d(5 * time.Second)}},
		Workload: &WorkloadSpec{
			Gossip:   &GossipSpec{Rate: 0.02},
			Requests: &RequestSpec{Rate: 0.5},
		},
	}
}
