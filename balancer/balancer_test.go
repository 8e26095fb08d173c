package balancer

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// testID returns a deterministic, uniform-looking ID for i.
func testID(i int) peer.ID {
	var id peer.ID
	for w := 0; w < 4; w++ {
		binary.LittleEndian.PutUint64(id[8*w:], mix64(uint64(i)*4+uint64(w)+1))
	}
	return id
}

// healthy returns n eligible candidates with score 1, load 0 and no
// latency sample.
func healthy(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{ID: testID(i), Score: 1, Healthy: true}
	}
	return cs
}

type namedStrategy struct {
	name string
	new  func() Strategy
}

func strategies() []namedStrategy {
	return []namedStrategy{
		{"round_robin", func() Strategy { return NewRoundRobin() }},
		{"least_loaded", func() Strategy { return NewLeastLoaded() }},
		{"p2c_peak_ewma", func() Strategy { return NewP2C(P2COptions{Seed: 1}) }},
		{"least_loaded_of_two", func() Strategy { return NewLeastLoadedOfTwo(1) }},
		{"weighted_random", func() Strategy { return NewWeightedRandom(1) }},
		{"highest_score", func() Strategy { return NewHighestScore() }},
		{"rendezvous", func() Strategy { return NewRendezvous() }},
	}
}

func TestNames(t *testing.T) {
	for _, s := range strategies() {
		if got := s.new().Name(); got != s.name {
			t.Errorf("Name() = %q, want %q", got, s.name)
		}
	}
}

func TestNoEligibleCandidate(t *testing.T) {
	down := healthy(5)
	for i := range down {
		down[i].Healthy = false
	}
	open := healthy(5)
	for i := range open {
		open[i].CircuitOpen = true
	}
	mixed := healthy(6)
	for i := range mixed {
		if i%2 == 0 {
			mixed[i].Healthy = false
		} else {
			mixed[i].CircuitOpen = true
		}
	}
	cases := map[string][]Candidate{
		"nil": nil, "empty": {}, "all unhealthy": down, "all circuits open": open,
		"unhealthy or open": mixed,
	}
	for _, s := range strategies() {
		st := s.new()
		for name, cands := range cases {
			for k := 0; k < 3; k++ {
				if i, err := st.Pick(cands, []byte("k")); !errors.Is(err, ErrNoCandidate) || i != -1 {
					t.Errorf("%s, %s: Pick = %d, %v; want -1, ErrNoCandidate", s.name, name, i, err)
				}
			}
		}
	}
}

// TestNeverPicksIneligible is a property test: over random candidate sets,
// every strategy picks an eligible candidate when there is one and
// returns ErrNoCandidate when there is none.
func TestNeverPicksIneligible(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, s := range strategies() {
		st := s.new()
		for trial := 0; trial < 2000; trial++ {
			n := 1 + r.IntN(40)
			pHealthy, pOpen := r.Float64(), r.Float64()*0.5
			cands := make([]Candidate, n)
			eligible := 0
			for i := range cands {
				cands[i] = Candidate{
					ID:          testID(r.IntN(1 << 20)),
					Score:       r.Float64(),
					Load:        r.IntN(10),
					Latency:     time.Duration(r.IntN(3)) * time.Duration(r.IntN(100)) * time.Millisecond,
					Healthy:     r.Float64() < pHealthy,
					CircuitOpen: r.Float64() < pOpen,
				}
				if cands[i].Eligible() {
					eligible++
				}
			}
			var key [8]byte
			binary.LittleEndian.PutUint64(key[:], r.Uint64())
			for k := 0; k < 5; k++ {
				i, err := st.Pick(cands, key[:])
				if eligible == 0 {
					if !errors.Is(err, ErrNoCandidate) {
						t.Fatalf("%s: no eligible candidate, Pick = %d, %v", s.name, i, err)
					}
					continue
				}
				if err != nil || i < 0 || i >= n || !cands[i].Eligible() {
					t.Fatalf("%s: Pick = %d, %v over %+v", s.name, i, err, cands)
				}
			}
		}
	}
}

func TestNoAllocations(t *testing.T) {
	cands := healthy(1000)
	for i := range cands {
		cands[i].Load = i % 7
		cands[i].Healthy = i%10 != 3
	}
	key := []byte("some key")
	for _, s := range strategies() {
		st := s.new()
		if a := testing.AllocsPerRun(100, func() { st.Pick(cands, key) }); a != 0 {
			t.Errorf("%s: %v allocations per Pick", s.name, a)
		}
	}
}

func TestConcurrentPicks(t *testing.T) {
	cands := healthy(64)
	for i := range cands {
		cands[i].Healthy = i%3 != 0
		cands[i].CircuitOpen = i%5 == 0
		cands[i].Load = i % 4
		cands[i].Latency = time.Duration(i) * time.Millisecond
	}
	for _, s := range strategies() {
		st := s.new()
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for g := 0; g < 8; g++ {
			wg.Go(func() {
				var key [8]byte
				for k := 0; k < 500; k++ {
					binary.LittleEndian.PutUint64(key[:], uint64(g*1000+k))
					i, err := st.Pick(cands, key[:])
					if err != nil || !cands[i].Eligible() {
						errs <- s.name
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for name := range errs {
			t.Errorf("%s: concurrent Pick chose an ineligible candidate or failed", name)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	cands := healthy(5)
	rr := NewRoundRobin()
	for k := 0; k < 15; k++ {
		if i, err := rr.Pick(cands, nil); err != nil || i != k%5 {
			t.Fatalf("pick %d = %d, %v; want %d", k, i, err, k%5)
		}
	}
	// Candidates 1 and 2 down: turns 1 and 2 go to 3.
	cands[1].Healthy = false
	cands[2].CircuitOpen = true
	rr = NewRoundRobin()
	want := []int{0, 3, 3, 3, 4, 0, 3, 3, 3, 4}
	for k, w := range want {
		if i, err := rr.Pick(cands, nil); err != nil || i != w {
			t.Fatalf("pick %d = %d, %v; want %d", k, i, err, w)
		}
	}
	// Wrapping: the last candidate down sends its turn to the first.
	cands = healthy(3)
	cands[2].Healthy = false
	rr = NewRoundRobin()
	for k, w := range []int{0, 1, 0, 0, 1, 0} {
		if i, _ := rr.Pick(cands, nil); i != w {
			t.Fatalf("wrap pick %d = %d; want %d", k, i, w)
		}
	}
}

func TestLeastLoaded(t *testing.T) {
	cands := healthy(5)
	for i, l := range []int{5, 2, 7, 1, 3} {
		cands[i].Load = l
	}
	ll := NewLeastLoaded()
	for k := 0; k < 10; k++ {
		if i, _ := ll.Pick(cands, nil); i != 3 {
			t.Fatalf("Pick = %d, want 3 (load 1)", i)
		}
	}
	cands[3].CircuitOpen = true
	if i, _ := ll.Pick(cands, nil); i != 1 {
		t.Fatalf("with 3 open, Pick = %d, want 1 (load 2)", i)
	}
	// Equal loads: the lower known latency wins; unknown loses to known.
	cands = healthy(3)
	cands[0].Latency = 0
	cands[1].Latency = 30 * time.Millisecond
	cands[2].Latency = 20 * time.Millisecond
	for k := 0; k < 6; k++ {
		if i, _ := ll.Pick(cands, nil); i != 2 {
			t.Fatalf("latency tie-break: Pick = %d, want 2", i)
		}
	}
	// Exact ties rotate: each of n tied candidates gets one of n picks.
	cands = healthy(4)
	ll = NewLeastLoaded()
	seen := map[int]int{}
	for k := 0; k < 8; k++ {
		i, _ := ll.Pick(cands, nil)
		seen[i]++
	}
	for i := range cands {
		if seen[i] != 2 {
			t.Fatalf("exact ties: picks per candidate %v, want 2 each", seen)
		}
	}
	// Negative loads count as 0.
	cands = healthy(2)
	cands[0].Load = -5
	cands[0].Latency = time.Second
	cands[1].Latency = time.Millisecond
	if i, _ := NewLeastLoaded().Pick(cands, nil); i != 1 {
		t.Fatalf("negative load: Pick = %d, want 1", i)
	}
}

func TestHighestScore(t *testing.T) {
	cands := healthy(6)
	for i, s := range []float64{0.2, 0.9, 0.5, 0.9, 0.9, 0.95} {
		cands[i].Score = s
	}
	cands[5].Healthy = false // best score, but down
	cands[1].Load, cands[3].Load, cands[4].Load = 3, 1, 1
	cands[3].Latency, cands[4].Latency = 0, 40*time.Millisecond
	hs := NewHighestScore()
	// 1, 3 and 4 tie on 0.9; 3 and 4 on load 1; 4 has a known latency.
	if i, err := hs.Pick(cands, nil); err != nil || i != 4 {
		t.Fatalf("Pick = %d, %v; want 4", i, err)
	}
	// Full tie: the lower ID wins whatever the order.
	cands = healthy(8)
	want := cands[0].ID
	for _, c := range cands {
		if c.ID.Less(want) {
			want = c.ID
		}
	}
	r := rand.New(rand.NewPCG(3, 3))
	for k := 0; k < 20; k++ {
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		if i, _ := hs.Pick(cands, nil); cands[i].ID != want {
			t.Fatalf("full tie: picked %s, want %s", cands[i].ID.ShortString(), want.ShortString())
		}
	}
	// Out-of-range scores are clamped: 7 counts as 1, NaN as 0.
	cands = healthy(2)
	cands[0].Score, cands[0].Load = 7, 1
	cands[1].Score = 1
	if i, _ := hs.Pick(cands, nil); i != 1 {
		t.Fatalf("clamped score: Pick = %d, want 1", i)
	}
	cands[0].Score, cands[0].Load = math.NaN(), 0
	cands[1].Score, cands[1].Load = 0.01, 5
	if i, _ := hs.Pick(cands, nil); i != 1 {
		t.Fatalf("NaN score: Pick = %d, want 1", i)
	}
}

func TestWeightedRandom(t *testing.T) {
	cands := healthy(5)
	for i, s := range []float64{0.1, 0.2, 0.3, 0.4, 0.9} {
		cands[i].Score = s
	}
	cands[4].CircuitOpen = true
	const picks = 100_000
	wr := NewWeightedRandom(42)
	var got [5]int
	for k := 0; k < picks; k++ {
		i, err := wr.Pick(cands, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[i]++
	}
	if got[4] != 0 {
		t.Fatalf("open circuit picked %d times", got[4])
	}
	for i := 0; i < 4; i++ {
		want := picks * cands[i].Score // scores of the eligible sum to 1
		if d := float64(got[i]) - want; d > 0.05*want || d < -0.05*want {
			t.Errorf("candidate %d (score %.1f): %d picks, want about %.0f", i, cands[i].Score, got[i], want)
		}
	}
	t.Logf("picks by score 0.1..0.4: %v", got[:4])

	// A zero score is never drawn while another eligible one is positive.
	cands = healthy(3)
	cands[0].Score, cands[2].Score = 0, 0
	for k := 0; k < 1000; k++ {
		if i, _ := wr.Pick(cands, nil); i != 1 {
			t.Fatalf("zero score picked: %d", i)
		}
	}
	// All eligible scores zero: uniform among the eligible.
	cands = healthy(4)
	for i := range cands {
		cands[i].Score = 0
	}
	cands[2].Healthy = false
	var uni [4]int
	for k := 0; k < 30_000; k++ {
		i, err := wr.Pick(cands, nil)
		if err != nil {
			t.Fatal(err)
		}
		uni[i]++
	}
	if uni[2] != 0 || uni[0] < 9000 || uni[1] < 9000 || uni[3] < 9000 {
		t.Fatalf("all-zero scores: picks %v, want about 10,000 for 0, 1, 3", uni)
	}
}

// TestSeedRepeats checks that the random strategies repeat themselves for
// a seed and differ across seeds.
func TestSeedRepeats(t *testing.T) {
	cands := healthy(100)
	for i := range cands {
		cands[i].Score = float64(i%10) / 10
		cands[i].Load = i % 13
		cands[i].Latency = time.Duration(i%17) * time.Millisecond
	}
	mk := map[string]func(seed uint64) Strategy{
		"p2c":      func(s uint64) Strategy { return NewP2C(P2COptions{Seed: s}) },
		"ll2":      func(s uint64) Strategy { return NewLeastLoadedOfTwo(s) },
		"weighted": func(s uint64) Strategy { return NewWeightedRandom(s) },
	}
	run := func(st Strategy) []int {
		out := make([]int, 200)
		for k := range out {
			out[k], _ = st.Pick(cands, nil)
		}
		return out
	}
	for name, f := range mk {
		a, b, c := run(f(9)), run(f(9)), run(f(10))
		same, diff := true, false
		for k := range a {
			same = same && a[k] == b[k]
			diff = diff || a[k] != c[k]
		}
		if !same || !diff {
			t.Errorf("%s: same seed repeats: %v; other seed differs: %v", name, same, diff)
		}
	}
}

func TestP2CCost(t *testing.T) {
	p := NewP2C(P2COptions{})
	c := Candidate{Latency: 20 * time.Millisecond, Load: 3, Score: 0.5}
	if got, want := p.Cost(&c), float64(20*time.Millisecond)*4/0.5; got != want {
		t.Errorf("Cost = %v, want %v", got, want)
	}
	c = Candidate{Load: 0, Score: 0}
	if got, want := p.Cost(&c), float64(time.Second)/DefaultScoreFloor; got != want {
		t.Errorf("unknown latency, score 0: Cost = %v, want %v", got, want)
	}
	q := NewP2C(P2COptions{UnknownLatency: 100 * time.Millisecond, IgnoreScore: true})
	if got, want := q.Cost(&c), float64(100*time.Millisecond); got != want {
		t.Errorf("custom unknown latency, no score: Cost = %v, want %v", got, want)
	}
}

// pickPair runs s on two candidates many times and returns how often it
// chose each.
func pickPair(t *testing.T, s Strategy, a, b Candidate) (na, nb int) {
	t.Helper()
	cands := []Candidate{a, b}
	for k := 0; k < 200; k++ {
		i, err := s.Pick(cands, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			na++
		} else {
			nb++
		}
	}
	return na, nb
}

func TestP2C(t *testing.T) {
	p := NewP2C(P2COptions{Seed: 5})
	base := Candidate{ID: testID(1), Score: 1, Healthy: true, Latency: 10 * time.Millisecond}
	// Two candidates: both are always drawn, so the cheaper always wins.
	busy := base
	busy.ID, busy.Load = testID(2), 4
	if na, _ := pickPair(t, p, base, busy); na != 200 {
		t.Errorf("idle vs busy: idle chosen %d/200", na)
	}
	slow := base
	slow.ID, slow.Latency = testID(2), 50*time.Millisecond
	if na, _ := pickPair(t, p, base, slow); na != 200 {
		t.Errorf("fast vs slow: fast chosen %d/200", na)
	}
	// Fails fast (linkerd2-proxy#4537): 1 ms but score 0.05, against
	// 10 ms and score 1. Peak EWMA alone picks the failing peer.
	failing := base
	failing.ID, failing.Latency, failing.Score = testID(2), time.Millisecond, 0.05
	if na, _ := pickPair(t, p, base, failing); na != 200 {
		t.Errorf("fails fast: healthy chosen %d/200", na)
	}
	if _, nb := pickPair(t, NewP2C(P2COptions{IgnoreScore: true}), base, failing); nb != 200 {
		t.Errorf("IgnoreScore: the 1 ms peer chosen %d/200, want all", nb)
	}
	// Unknown latency counts as 1 s: it loses to 500 ms, beats 2 s.
	fresh := base
	fresh.ID, fresh.Latency = testID(2), 0
	known := base
	known.Latency = 500 * time.Millisecond
	if na, _ := pickPair(t, p, known, fresh); na != 200 {
		t.Errorf("500 ms vs unknown: 500 ms chosen %d/200", na)
	}
	known.Latency = 2 * time.Second
	if _, nb := pickPair(t, p, known, fresh); nb != 200 {
		t.Errorf("2 s vs unknown: unknown chosen %d/200", nb)
	}
	// One eligible candidate: it is picked.
	cands := healthy(10)
	for i := range cands {
		cands[i].Healthy = i == 7
	}
	for k := 0; k < 20; k++ {
		if i, err := p.Pick(cands, nil); err != nil || i != 7 {
			t.Fatalf("one eligible: Pick = %d, %v", i, err)
		}
	}
	// The worst of n is never picked (it could only win against itself).
	cands = healthy(10)
	for i := range cands {
		cands[i].Load = i
	}
	for k := 0; k < 2000; k++ {
		if i, _ := p.Pick(cands, nil); i == 9 {
			t.Fatal("picked the most loaded of 10")
		}
	}
}

func TestLeastLoadedOfTwo(t *testing.T) {
	l := NewLeastLoadedOfTwo(5)
	a := Candidate{ID: testID(1), Score: 1, Healthy: true, Load: 1, Latency: time.Second}
	b := Candidate{ID: testID(2), Score: 0, Healthy: true, Load: 2, Latency: time.Millisecond}
	if na, _ := pickPair(t, l, a, b); na != 200 {
		t.Errorf("lower load chosen %d/200", na)
	}
	b.Load = 1
	if _, nb := pickPair(t, l, a, b); nb != 200 {
		t.Errorf("equal load: lower latency chosen %d/200", nb)
	}
}

// TestBallsIntoBins throws n balls into n bins, the load of a bin being
// the balls in it so far: one random choice against P2C (and
// LeastLoadedOfTwo) over the same number of draws. Theory at n = 10⁶:
// about 8–9 for one choice, 4 for two.
func TestBallsIntoBins(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	cands := healthy(n)
	reset := func() {
		for i := range cands {
			cands[i].Load = 0
		}
	}
	throw := func(pick func() int) int {
		reset()
		maxLoad := 0
		for b := 0; b < n; b++ {
			i := pick()
			cands[i].Load++
			maxLoad = max(maxLoad, cands[i].Load)
		}
		return maxLoad
	}
	r := &rng{seed: 11}
	one := throw(func() int { return below(r.next(), n) })
	p := NewP2C(P2COptions{Seed: 11})
	two := throw(func() int { i, _ := p.Pick(cands, nil); return i })
	l := NewLeastLoadedOfTwo(11)
	two2 := throw(func() int { i, _ := l.Pick(cands, nil); return i })
	t.Logf("n = %d: max load one choice %d, P2C peak EWMA %d, least loaded of two %d", n, one, two, two2)
	if one < 6 || two > 5 || two2 > 5 {
		t.Errorf("n = %d: one choice %d (want >= 6), P2C %d, least loaded of two %d (want <= 5)", n, one, two, two2)
	}
}

func TestRendezvousStable(t *testing.T) {
	cands := healthy(50)
	rv := NewRendezvous()
	r := rand.New(rand.NewPCG(1, 2))
	var key [16]byte
	for k := 0; k < 500; k++ {
		binary.LittleEndian.PutUint64(key[:], r.Uint64())
		i, err := rv.Pick(cands, key[:])
		if err != nil {
			t.Fatal(err)
		}
		id := cands[i].ID
		if j, _ := rv.Pick(cands, key[:]); j != i {
			t.Fatalf("same key, same slice: %d then %d", i, j)
		}
		r.Shuffle(len(cands), func(a, b int) { cands[a], cands[b] = cands[b], cands[a] })
		if j, _ := rv.Pick(cands, key[:]); cands[j].ID != id {
			t.Fatalf("same key, shuffled slice: %s then %s", id.ShortString(), cands[j].ID.ShortString())
		}
	}
	// Fixed across processes, platforms and versions: a pinned weight.
	// Changing it moves every key in a running network; do not.
	if got := Weight([]byte("block/1"), testID(0)); got != 0xc396c59316ca3306 {
		t.Fatalf("Weight(block/1, testID(0)) = %#x, want 0xc396c59316ca3306", got)
	}
	if fnv1a64([]byte("a")) != 0xaf63dc4c8601ec8c { // hash/fnv's New64a of "a"
		t.Fatalf("fnv1a64(a) = %#x", fnv1a64([]byte("a")))
	}
}

// TestRendezvousMovement removes one of n peers (by marking it unhealthy
// and, separately, by dropping it from the slice) and checks that only
// its keys move, about 1/n of them.
func TestRendezvousMovement(t *testing.T) {
	const keys = 100_000
	rv := NewRendezvous()
	sizes := []int{10, 37}
	if raceEnabled {
		sizes = sizes[:1] // the race detector makes 10⁵ × 37 hashes slow
	}
	for _, n := range sizes {
		cands := healthy(n)
		owner := make([]peer.ID, keys)
		var key [8]byte
		perPeer := map[peer.ID]int{}
		for k := range owner {
			binary.LittleEndian.PutUint64(key[:], uint64(k))
			i, _ := rv.Pick(cands, key[:])
			owner[k] = cands[i].ID
			perPeer[owner[k]]++
		}
		// Keys spread evenly: each peer holds 1/n ± 10 %.
		for id, c := range perPeer {
			if want := float64(keys) / float64(n); float64(c) < 0.9*want || float64(c) > 1.1*want {
				t.Errorf("n = %d: %s holds %d keys, want about %.0f", n, id.ShortString(), c, want)
			}
		}
		gone := cands[n/2].ID
		down := append([]Candidate(nil), cands...)
		down[n/2].Healthy = false
		dropped := append(append([]Candidate(nil), cands[:n/2]...), cands[n/2+1:]...)
		for name, after := range map[string][]Candidate{"unhealthy": down, "removed": dropped} {
			moved := 0
			for k := range owner {
				binary.LittleEndian.PutUint64(key[:], uint64(k))
				i, _ := rv.Pick(after, key[:])
				if after[i].ID == owner[k] {
					continue
				}
				moved++
				if owner[k] != gone {
					t.Fatalf("n = %d, %s: key %d moved from %s, which stayed", n, name, k, owner[k].ShortString())
				}
			}
			frac := float64(moved) / keys
			t.Logf("n = %d, %s: %.4f of keys moved (1/n = %.4f)", n, name, frac, 1/float64(n))
			if frac < 0.8/float64(n) || frac > 1.2/float64(n) {
				t.Errorf("n = %d, %s: %.4f of keys moved, want within 20%% of %.4f", n, name, frac, 1/float64(n))
			}
		}
	}
}
