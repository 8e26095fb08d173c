package balancer_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/peer"
)

// peerStats is what a manager might keep per peer, updated atomically by
// the streams, the health checker and the breaker.
type peerStats struct {
	id      peer.ID
	score   atomic.Uint64 // math.Float64bits in a real manager; per mille here
	load    atomic.Int64
	rttNs   atomic.Int64
	healthy atomic.Bool
	open    atomic.Bool
}

// snapshot fills buf (reused from pick to pick) with one Candidate per
// peer, from atomic loads only.
func snapshot(buf []balancer.Candidate, peers []*peerStats) []balancer.Candidate {
	buf = buf[:0]
	for _, p := range peers {
		buf = append(buf, balancer.Candidate{
			ID:          p.id,
			Score:       float64(p.score.Load()) / 1000,
			Load:        int(p.load.Load()),
			Latency:     time.Duration(p.rttNs.Load()),
			Healthy:     p.healthy.Load(),
			CircuitOpen: p.open.Load(),
		})
	}
	return buf
}

func Example() {
	mk := func(b byte, scorePermille uint64, load int64, rtt time.Duration, healthy, open bool) *peerStats {
		p := &peerStats{id: peer.ID{b}}
		p.score.Store(scorePermille)
		p.load.Store(load)
		p.rttNs.Store(int64(rtt))
		p.healthy.Store(healthy)
		p.open.Store(open)
		return p
	}
	peers := []*peerStats{
		mk(1, 950, 3, 40*time.Millisecond, true, false), // cost 40 ms × 4 / 0.95 ≈ 168 ms
		mk(2, 900, 0, 90*time.Millisecond, true, false), // cost 90 ms × 1 / 0.9 = 100 ms
		mk(3, 990, 0, 5*time.Millisecond, true, true),   // circuit open: never picked
		mk(4, 990, 0, 5*time.Millisecond, false, false), // unhealthy: never picked
	}

	// A seeded P2C repeats its draws, so a simulation repeats itself.
	var strategy balancer.Strategy = balancer.NewP2C(balancer.P2COptions{Seed: 1})
	buf := make([]balancer.Candidate, 0, len(peers))
	cands := snapshot(buf, peers)
	i, err := strategy.Pick(cands, nil)
	if err != nil {
		fmt.Println("no peer:", err)
		return
	}
	fmt.Printf("%s picked peer %d\n", strategy.Name(), cands[i].ID[0])

	// The other strategies take the same snapshot. HighestScore skips the
	// two 0.99 peers that are down.
	i, _ = balancer.NewHighestScore().Pick(cands, nil)
	fmt.Printf("highest_score picked peer %d\n", cands[i].ID[0])

	// When every peer is down, Pick says so rather than fall back.
	peers[0].healthy.Store(false)
	peers[1].open.Store(true)
	cands = snapshot(buf, peers)
	if _, err := strategy.Pick(cands, nil); errors.Is(err, balancer.ErrNoCandidate) {
		fmt.Println("no peer:", err)
	}
	// Output:
	// p2c_peak_ewma picked peer 2
	// highest_score picked peer 1
	// no peer: balancer: no healthy candidate
}

// A key-based pick: the same key goes to the same peer while it is up.
func ExampleRendezvous() {
	cands := make([]balancer.Candidate, 5)
	for i := range cands {
		cands[i] = balancer.Candidate{ID: peer.ID{byte(i + 1)}, Score: 1, Healthy: true}
	}
	rv := balancer.NewRendezvous()
	key := []byte("block/1024")
	first, _ := rv.Pick(cands, key)
	again, _ := rv.Pick(cands, key)
	fmt.Println("same peer:", first == again)

	cands[first].Healthy = false // its keys, and only its, move elsewhere
	moved, _ := rv.Pick(cands, key)
	fmt.Println("moved when down:", moved != first)
	// Output:
	// same peer: true
	// moved when down: true
}
