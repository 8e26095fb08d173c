package simulation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/peerlink/peerlink/balancer"
)

// Bad workloads are refused with an error naming the field.
func TestWorkloadValidate(t *testing.T) {
	for _, tc := range []struct{ json, field string }{
		{`"gossip": {"rate": -1}`, "Workload.Gossip.Rate"},
		{`"gossip": {"rate": 1e9}`, "Workload.Gossip.Rate"},
		{`"gossip": {"rate": 1, "size": 100000000}`, "Workload.Gossip.Size"},
		{`"gossip": {"rate": 1, "fanout": -2}`, "Workload.Gossip.Fanout"},
		{`"gossip": {"rate": 1, "priority": "urgent"}`, "Workload.Gossip.Priority"},
		{`"requests": {"rate": 1, "strategies": ["p2c", "magic"]}`, "Workload.Requests.Strategies[1]"},
		{`"requests": {"rate": 1, "slow_nodes": [10]}`, "Workload.Requests.SlowNodes has node 10"},
		{`"requests": {"rate": 1, "timeout": "-1s"}`, "Workload.Requests.Timeout"},
		{`"bulk": {"size": 0}`, "Workload.Bulk.Size"},
		{`"bulk": {"size": 10, "nodes": [-1]}`, "Workload.Bulk.Nodes"},
		{`"flood": {}`, "Workload.Flood.Nodes is empty"},
		{`"squatters": [12]`, "Workload.Squatters"},
		{`"trim": {"high_water": 4, "low_water": 6}`, "Workload.Trim"},
		{`"gossip": {"rate": 1, "colour": "red"}`, "colour"},
	} {
		_, err := ParseScenario([]byte(`{"nodes": 10, "duration": "1s", "workload": {` + tc.json + `}}`))
		if !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v; want ErrScenario naming %s", tc.json, err, tc.field)
		}
	}
	// Defaults fill a copy: the caller's scenario keeps its zero fields.
	sc := Scenario{Nodes: 10, Degree: 4, Duration: Duration(time.Second), Workload: &WorkloadSpec{Gossip: &GossipSpec{Rate: 1}}}
	if g := sc.withDefaults().Workload.Gossip; g.Fanout != 3 || g.Size != 256 || sc.Workload.Gossip.Fanout != 0 {
		t.Fatalf("defaults %+v, caller's %+v", *g, *sc.Workload.Gossip)
	}
}

// A message's measures come from its arrivals: the share of its target
// reached and when, a target node that went down not counted against it.
func TestMessageStat(t *testing.T) {
	s := &Sim{sc: Scenario{Nodes: 6}}
	o := newObserver(s)
	ms := time.Millisecond
	tr := &msgTrack{origin: 0, at: 100 * ms, target: []uint64{0b11111}, nTarget: 5, copies: 6, dups: 2,
		arrivals: []arrival{{0, 0, 100 * ms}, {3, 2, 160 * ms}, {1, 1, 130 * ms}, {2, 1, 140 * ms}}}
	st := o.stat(7, tr, 5*time.Second)
	if st.Complete || st.Reached != 4 || st.Target != 5 || st.To50 != Duration(40*ms) || st.To90 != 0 || st.LastHop != 2 {
		t.Fatalf("%+v", st)
	}
	o.downs[4] = []time.Duration{50 * ms, 2 * time.Second} // down before (restarted), and again after publication
	st = o.stat(7, tr, 5*time.Second)
	if !st.Complete || st.Target != 4 || st.To100 != Duration(60*ms) || st.To99 != Duration(60*ms) {
		t.Fatalf("%+v", st)
	}
	if st = o.stat(7, tr, time.Second); st.Complete {
		t.Fatalf("node 4 went down after the deadline, yet %+v", st)
	}
}

func TestCDF(t *testing.T) {
	var ds []time.Duration
	for i := range 1000 {
		ds = append(ds, time.Duration(1000-i)*time.Millisecond)
	}
	c := cdf(ds, 100)
	if len(c) != 100 || c[0].At != Duration(10*time.Millisecond) || c[0].Share != 0.01 || c[99].Share != 1 || c[99].At != Duration(time.Second) {
		t.Fatalf("%d points, first %+v, last %+v", len(c), c[0], c[len(c)-1])
	}
	if cdf(nil, 10) != nil {
		t.Fatal("cdf of nothing")
	}
}

// The random strategy spreads its picks over the eligible candidates
// only.
func TestRandomStrategy(t *testing.T) {
	r := newStrategy(StrategyRandom, 1, 0)
	cands := make([]balancer.Candidate, 5)
	for i := range cands {
		cands[i].Healthy = i != 2
	}
	count := make([]int, 5)
	for range 4000 {
		i, err := r.Pick(cands, nil)
		if err != nil {
			t.Fatal(err)
		}
		count[i]++
	}
	if count[2] != 0 || min(count[0], count[1], count[3], count[4]) < 850 {
		t.Fatalf("picks %v", count)
	}
	if _, err := r.Pick(cands[2:3], nil); err == nil {
		t.Fatal("picked an ineligible candidate")
	}
}

// Options.Progress is called every virtual second while Run runs, with
// the run's state so far.
func TestProgress(t *testing.T) {
	sc := baseline(10)
	sc.Duration = Duration(8 * time.Second)
	sc.Workload = &WorkloadSpec{Gossip: &GossipSpec{Rate: 0.5, Settle: Duration(time.Second)}}
	sc.Faults = []Fault{{Kind: FaultCrash, At: Duration(4500 * time.Millisecond), Nodes: []int{3}}}
	var seen []Progress
	inBubble(t, func(t *testing.T) {
		opts := bubbleOpts()
		opts.Progress = func(p Progress) { seen = append(seen, p) }
		res, err := Run(t.Context(), sc, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) < 7 || len(seen) > 8 {
			t.Fatalf("%d progress calls in 8 virtual seconds", len(seen))
		}
		for k, p := range seen {
			if p.Virtual != time.Duration(k+1)*time.Second {
				t.Fatalf("call %d at %v", k, p.Virtual)
			}
			if k > 0 && p.Published < seen[k-1].Published {
				t.Fatalf("published went back: %+v after %+v", p, seen[k-1])
			}
			if want := 10 - min(max(k-3, 0), 1); p.NodesUp != want {
				t.Fatalf("call %d: %d nodes up, want %d", k, p.NodesUp, want)
			}
		}
		last := seen[len(seen)-1]
		if last.Published != res.Gossip.Published || last.Published == 0 || last.Delivery < 0.9 || last.Delivery > 1 {
			t.Fatalf("last progress %+v; result published %d", last, res.Gossip.Published)
		}
	})
}

// An agent remembers at most maxSeen message IDs, forgetting the oldest:
// peers can send it any number of them.
func TestAgentSeenBounded(t *testing.T) {
	a := &Agent{seen: make(map[uint64]struct{})}
	for id := range uint64(maxSeen + 10) {
		if !a.see(id) {
			t.Fatalf("id %d seen before it came", id)
		}
	}
	if len(a.seen) != maxSeen || len(a.seenRing) != maxSeen {
		t.Fatalf("%d IDs kept (ring %d), want %d", len(a.seen), len(a.seenRing), maxSeen)
	}
	if a.see(maxSeen + 9) {
		t.Fatal("the newest ID forgotten")
	}
	if !a.see(0) {
		t.Fatal("the oldest ID still remembered past maxSeen")
	}
}
