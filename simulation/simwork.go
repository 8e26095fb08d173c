package simulation

import (
	"slices"
	"sync"
	"time"

	"github.com/peerlink/peerlink"
)

// streamAgent seeds the agents' own draws; apart from the streams in
// topology.go so that those keep their values.
const streamAgent = 64

// role returns what node i does in the workload ("" honest).
func (s *Sim) role(i int) string { return s.sc.Workload.role(i) }

// isVictim reports whether node i is linked by the topology to a flood
// attacker.
func (s *Sim) isVictim(i int) bool {
	w := s.sc.Workload
	if w == nil || w.Flood == nil || s.role(i) != "" {
		return false
	}
	return slices.ContainsFunc(s.graph.Adj[i], func(j int) bool { return s.role(j) == "flood" })
}

// serviceTime is how long node j takes to answer a request.
func (s *Sim) serviceTime(j int) time.Duration {
	w := s.sc.Workload
	if w == nil || w.Requests == nil {
		return 0
	}
	if slices.Contains(w.Requests.SlowNodes, j) {
		return w.Requests.SlowServiceTime.D()
	}
	return w.Requests.ServiceTime.D()
}

// trueLatency is what a request from i to j takes on an idle link: the
// true round trip and j's service time.
func (s *Sim) trueLatency(i, j int) time.Duration { return s.net.RTT(i, j) + s.serviceTime(j) }

// degraded reports whether j answers i slower than the links were drawn:
// a degraded link or a slow server.
func (s *Sim) degraded(i, j int) bool {
	s.net.mu.Lock()
	base := s.net.baseLink(i, j).Latency + s.net.baseLink(j, i).Latency
	s.net.mu.Unlock()
	w := s.sc.Workload
	slow := w != nil && w.Requests != nil && slices.Contains(w.Requests.SlowNodes, j) && w.Requests.SlowServiceTime > w.Requests.ServiceTime
	return s.net.RTT(i, j) > base || slow
}

func (s *Sim) nodesUp() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, nd := range s.nodes {
		if nd.m != nil {
			n++
		}
	}
	return n
}

// squatTargets returns the honest nodes squatter i dials beyond its
// edges: SquatTargets of them (all if 0), from the seed.
func (s *Sim) squatTargets(i int) []int {
	var honest []int
	for j := range s.sc.Nodes {
		if j != i && s.role(j) == "" && !s.graph.hasEdge(i, j) {
			honest = append(honest, j)
		}
	}
	r := newRand(s.sc.Seed^uint64(i), streamAgent+1)
	r.Shuffle(len(honest), func(a, b int) { honest[a], honest[b] = honest[b], honest[a] })
	if k := s.sc.Workload.SquatTargets; k > 0 && k < len(honest) {
		honest = honest[:k]
	}
	return honest
}

// configure sets what the workload needs of a node's manager config.
func (w *WorkloadSpec) configure(role string, cfg *peerlink.Config) {
	if w == nil || w.Trim == nil || role != "" {
		return
	}
	cfg.Trim.HighWater, cfg.Trim.LowWater = w.Trim.HighWater, w.Trim.LowWater
	if w.Trim.GracePeriod > 0 {
		cfg.Trim.GracePeriod = w.Trim.GracePeriod.D()
	}
	if w.Trim.SilencePeriod > 0 {
		cfg.Trim.SilencePeriod = w.Trim.SilencePeriod.D()
	}
}

// watch starts, if there is anything to watch, a goroutine that calls
// Options.Progress and samples the flood victims every virtual second
// while Run runs; the returned func stops it and waits.
func (s *Sim) watch() (stop func()) {
	flood := s.sc.Workload != nil && s.sc.Workload.Flood != nil
	if s.obs == nil || (s.opts.Progress == nil && !flood) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-done:
				return
			}
			if flood {
				s.obs.sampleFlood()
			}
			if s.opts.Progress != nil {
				s.opts.Progress(s.obs.progress())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// maxScorePoints bounds Result.Scores.
const maxScorePoints = 4000

// scores returns each honest node's score of its linked honest peers
// against the truth, node by node until maxScorePoints.
func (s *Sim) scores() []ScorePoint {
	var pts []ScorePoint
	for i := range s.sc.Nodes {
		m := s.Manager(i)
		if m == nil || s.role(i) != "" {
			continue
		}
		for _, p := range m.Peers() {
			j, ok := s.Node(p)
			if !ok || s.role(j) != "" {
				continue
			}
			pts = append(pts, ScorePoint{Node: i, Peer: j, Score: m.QualityScore(p), True: Duration(s.trueLatency(i, j)), Degraded: s.degraded(i, j)})
			if len(pts) == maxScorePoints {
				return pts
			}
		}
	}
	return pts
}

// component marks in target the honest nodes up linked to origin over
// the links up now, as the managers report them (observer's world).
func (s *Sim) component(origin int, target []uint64) {
	markComponent(origin, target, func(i int, add func(j int)) {
		m := s.Manager(i)
		if m == nil {
			return
		}
		for _, p := range m.Peers() {
			if j, ok := s.Node(p); ok && s.Manager(j) != nil && s.role(j) == "" {
				add(j)
			}
		}
	})
}

// markComponent marks in the bitset target origin and every node
// reachable from it, links(i, add) calling add for each neighbour of i
// that counts.
func markComponent(origin int, target []uint64, links func(i int, add func(j int))) {
	target[origin/64] |= 1 << (origin % 64)
	queue := []int{origin}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		links(i, func(j int) {
			if target[j/64]&(1<<(j%64)) == 0 {
				target[j/64] |= 1 << (j % 64)
				queue = append(queue, j)
			}
		})
	}
}

// truth is trueLatency, which the harness always knows (observer's world).
func (s *Sim) truth(i, j int) (time.Duration, bool) { return s.trueLatency(i, j), true }
