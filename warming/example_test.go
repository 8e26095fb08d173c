package warming_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/warming"
)

// A round of keep-warm over three known peers and a newcomer, with two
// slots, one of them for exploration: the best known peer and the
// newcomer are chosen; the warm peer that lost its slot is left warm as
// an extra, to close when idle.
func ExamplePolicy_Plan() {
	cfg := warming.DefaultConfig()
	cfg.MinWarm, cfg.ExploreShare = 2, 0.5
	p, err := warming.New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	id := func(b byte) peer.ID { return peer.ID{b} }
	cands := []warming.Candidate{
		{ID: id(1), Score: 0.95, Tried: true, Dialable: true},
		{ID: id(2), Score: 0.60, Tried: true, Dialable: true, Connected: true, State: warming.Warm, Role: warming.Kept},
		{ID: id(3), Score: 0.40, Tried: true, Dialable: true},
		{ID: id(4), Score: 0.775, Dialable: true}, // never tried
	}
	var plan warming.Plan
	p.Plan(time.Unix(0, 0), cands, warming.Load{}, -1, &plan)
	for i, c := range cands {
		fmt.Println(c.ID[0], plan.Roles[i])
	}
	fmt.Println("start:", plan.Start)
	// Output:
	// 1 kept
	// 2 extra
	// 3 none
	// 4 kept
	// start: [0 3]
}
