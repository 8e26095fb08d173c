package warming

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
)

var t0 = time.Unix(1_000_000, 0)

// testID returns a deterministic, uniform-looking ID for i.
func testID(i int) peer.ID {
	var id peer.ID
	for w := 0; w < 4; w++ {
		binary.LittleEndian.PutUint64(id[8*w:], mix64(uint64(i)*4+uint64(w)+1))
	}
	return id
}

// tried returns n cold, dialable candidates that have been tried, with
// scores 0.5 + i/(2n): the last one best.
func tried(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{ID: testID(i), Score: 0.5 + float64(i)/float64(2*n), Tried: true, Dialable: true}
	}
	return cs
}

// newcomers returns n dialable candidates never tried, numbered from
// first.
func newcomers(first, n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{ID: testID(first + i), Score: 0.775, Dialable: true}
	}
	return cs
}

func newPolicy(t testing.TB, mod func(*Config)) *Policy {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ExploreShare = 0
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rolesByID returns the candidates given role by plan, as IDs.
func withRole(cands []Candidate, plan *Plan, role Role) []peer.ID {
	var ids []peer.ID
	for i, r := range plan.Roles {
		if r == role {
			ids = append(ids, cands[i].ID)
		}
	}
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

func starts(cands []Candidate, plan *Plan) []peer.ID {
	ids := make([]peer.ID, len(plan.Start))
	for k, i := range plan.Start {
		ids[k] = cands[i].ID
	}
	return ids
}

func TestPlanKeepsBestScores(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm = 3 })
	cands := tried(10)
	var plan Plan
	p.Plan(t0, cands, Load{}, -1, &plan)
	want := []peer.ID{cands[9].ID, cands[8].ID, cands[7].ID}
	if got := starts(cands, &plan); !slices.Equal(got, want) {
		t.Fatalf("Start = %v, want the three best in rank order %v", got, want)
	}
	kept := withRole(cands, &plan, Kept)
	slices.SortFunc(want, peer.ID.Compare)
	if !slices.Equal(kept, want) {
		t.Fatalf("kept = %v, want %v", kept, want)
	}

	// Once they are warm, nothing more is started.
	for _, i := range plan.Start {
		cands[i].State, cands[i].Role, cands[i].Connected = Warm, Kept, true
	}
	p.Plan(t0, cands, Load{}, -1, &plan)
	if len(plan.Start) != 0 {
		t.Fatalf("Start = %v with the kept set warm, want none", plan.Start)
	}
	if got := withRole(cands, &plan, Kept); !slices.Equal(got, want) {
		t.Fatalf("kept = %v, want the same %v", got, want)
	}
}

func TestPlanStickiness(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm = 1 })
	cands := []Candidate{
		{ID: testID(1), Score: 0.90, Tried: true, Dialable: true, Connected: true, State: Warm, Role: Kept},
		{ID: testID(2), Score: 0.93, Tried: true, Dialable: true},
	}
	var plan Plan
	p.Plan(t0, cands, Load{}, -1, &plan)
	if plan.Roles[0] != Kept || len(plan.Start) != 0 {
		t.Fatalf("a warm peer 0.03 behind lost its slot: roles %v, start %v", plan.Roles, plan.Start)
	}
	cands[1].Score = 0.96 // beyond the stickiness
	p.Plan(t0, cands, Load{}, -1, &plan)
	if plan.Roles[1] != Kept || !slices.Equal(plan.Start, []int{1}) {
		t.Fatalf("a peer 0.06 ahead did not take the slot: roles %v, start %v", plan.Roles, plan.Start)
	}
	// The peer that lost its slot is left warm, as an extra: not kept.
	if plan.Roles[0] != Extra {
		t.Fatalf("the displaced peer's role is %v, want extra", plan.Roles[0])
	}
}

// A candidate with a link costs a ping; the room under the connection
// limits only bounds candidates that need a new link, attempts under way
// included.
func TestPlanRespectsRoom(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm = 4 })
	cands := tried(6)
	cands[0].Connected = true // the worst score, but it needs no room
	var plan Plan
	p.Plan(t0, cands, Load{}, 1, &plan)
	if got, want := starts(cands, &plan), []peer.ID{cands[5].ID, cands[0].ID}; !slices.Equal(got, want) {
		t.Fatalf("Start = %v, want the best (the one room) and the connected one %v", got, want)
	}

	// An attempt already dialing takes the room.
	cands[5].State = Warming
	p.Plan(t0, cands, Load{}, 1, &plan)
	for _, i := range plan.Start {
		if cands[i].needsLink() {
			t.Fatalf("started %d, which needs a link, with the one room taken", i)
		}
	}
	p.Plan(t0, cands, Load{}, 0, &plan)
	for _, i := range plan.Start {
		if cands[i].needsLink() {
			t.Fatalf("started %d, which needs a link, with no room", i)
		}
	}

	// Without room, the slots exploration cannot use go to connected
	// peers.
	p = newPolicy(t, func(c *Config) { c.MinWarm, c.ExploreShare = 4, 0.5 })
	cands = append(tried(6), newcomers(100, 5)...)
	for i := range 4 {
		cands[i].Connected = true
	}
	p.Plan(t0, cands, Load{}, 0, &plan)
	if got := len(withRole(cands, &plan, Kept)); got != 4 || len(plan.Start) != 4 {
		t.Fatalf("no room: kept %d, started %d; want the 4 connected peers", got, len(plan.Start))
	}
	for _, i := range plan.Start {
		if !cands[i].Connected {
			t.Fatalf("no room: started %d, which has no link", i)
		}
	}
}

func TestPlanMaxConcurrent(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm, c.MaxConcurrent = 10, 4 })
	cands := tried(20)
	var plan Plan
	p.Plan(t0, cands, Load{}, -1, &plan)
	if len(plan.Start) != 4 {
		t.Fatalf("started %d, want MaxConcurrent 4", len(plan.Start))
	}
	for _, i := range plan.Start[:3] {
		cands[i].State = Warming
	}
	p.Plan(t0, cands, Load{}, -1, &plan)
	if len(plan.Start) != 1 {
		t.Fatalf("started %d with 3 under way, want 1", len(plan.Start))
	}
	if got := len(withRole(cands, &plan, Kept)); got != 10 {
		t.Fatalf("kept %d, want 10 (chosen, if not all started)", got)
	}
}

func TestRetryAt(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.RetryInitial, c.RetryMax = time.Second, 10*time.Second })
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {1000, 10 * time.Second}} {
		if got := p.RetryAt(tc.failures, t0).Sub(t0); got != tc.want {
			t.Errorf("RetryAt(%d) = +%v, want +%v", tc.failures, got, tc.want)
		}
	}
}

// A failed peer is not retried before its retry time, nor while its
// circuit is open, however good its score.
func TestPlanRetriesFailedAfterBackoff(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm = 1 })
	cands := tried(3)
	best := &cands[2]
	best.State, best.Failures, best.LastFailure = Failed, 3, t0 // retry at t0 + 4 s
	var plan Plan
	p.Plan(t0.Add(3*time.Second), cands, Load{}, -1, &plan)
	if got := starts(cands, &plan); !slices.Equal(got, []peer.ID{cands[1].ID}) {
		t.Fatalf("before its retry time: Start = %v, want the next best", got)
	}
	p.Plan(t0.Add(4*time.Second), cands, Load{}, -1, &plan)
	if got := starts(cands, &plan); !slices.Equal(got, []peer.ID{best.ID}) {
		t.Fatalf("at its retry time: Start = %v, want the failed peer again", got)
	}
	best.CircuitOpen = true
	p.Plan(t0.Add(time.Hour), cands, Load{}, -1, &plan)
	if plan.Roles[2] != None {
		t.Fatalf("a peer with an open circuit was chosen")
	}
	// Without an address or a link there is nothing to warm.
	cands[1].Dialable = false
	p.Plan(t0, cands, Load{}, -1, &plan)
	if plan.Roles[1] != None {
		t.Fatalf("a peer with nothing to dial was chosen")
	}
}

// With MinWarm 4 and one slot in four for exploration, each round keeps
// the three best known peers and explores one newcomer; every newcomer
// is explored within ⌈newcomers / slots⌉ rounds.
func TestPlanExploresNewcomers(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm, c.ExploreShare = 4, 0.25 })
	cands := append(tried(4), newcomers(100, 6)...)
	for i := range 4 {
		cands[i].Score = 0.95 // known and good: better than any newcomer's neutral score
		cands[i].State, cands[i].Role, cands[i].Connected = Warm, Kept, true
	}
	var plan Plan
	explored := map[peer.ID]int{}
	for round := 1; round <= 6; round++ {
		p.Plan(t0, cands, Load{}, -1, &plan)
		if plan.Explore != 1 {
			t.Fatalf("round %d: %d exploration slots, want 1", round, plan.Explore)
		}
		if got := len(withRole(cands, &plan, Kept)); got != 4 {
			t.Fatalf("round %d: kept %d, want 4", round, got)
		}
		var fresh []int
		for _, i := range plan.Start {
			if !cands[i].Tried {
				fresh = append(fresh, i)
			}
		}
		if len(fresh) != 1 {
			t.Fatalf("round %d: started newcomers %v, want exactly one", round, fresh)
		}
		// The round's outcome: the newcomer warmed, and is tried now
		// (with a mediocre score, so it leaves its slot to the next).
		i := fresh[0]
		explored[cands[i].ID] = round
		cands[i].State, cands[i].Tried, cands[i].Connected, cands[i].Score = Warm, true, true, 0.7
		for j := range cands {
			cands[j].Role = plan.Roles[j]
		}
	}
	if len(explored) != 6 {
		t.Fatalf("explored %d newcomers in 6 rounds, want all 6", len(explored))
	}
}

// An exploration under way keeps its slot: the next round does not start
// another one in its place.
func TestPlanExplorationInFlightKeepsItsSlot(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm, c.ExploreShare = 4, 0.25 })
	cands := append(tried(4), newcomers(100, 3)...)
	var plan Plan
	p.Plan(t0, cands, Load{}, -1, &plan)
	for j := range cands {
		cands[j].Role = plan.Roles[j]
		if slices.Contains(plan.Start, j) {
			cands[j].State = Warming
		}
	}
	p.Plan(t0, cands, Load{}, -1, &plan)
	if len(plan.Start) != 0 {
		t.Fatalf("with the round's attempts under way, started %v", plan.Start)
	}
	if got := len(withRole(cands, &plan, Kept)); got != 4 {
		t.Fatalf("kept %d, want 4", got)
	}
}

// With a fractional share (MinWarm 1 × 0.25), a round has an exploration
// slot one time in four, drawn from the seeded source: the same seed
// draws the same rounds.
func TestPlanExplorationShareSeeded(t *testing.T) {
	run := func(seed uint64) []int {
		cfg := DefaultConfig()
		cfg.MinWarm, cfg.ExploreShare = 1, 0.25
		p, err := New(cfg, rand.New(rand.NewPCG(seed, 7)))
		if err != nil {
			t.Fatal(err)
		}
		cands := append(tried(3), newcomers(100, 3)...)
		var plan Plan
		var rounds []int
		for round := range 4000 {
			p.Plan(t0, cands, Load{}, -1, &plan)
			if plan.Explore == 1 {
				rounds = append(rounds, round)
			}
		}
		return rounds
	}
	a, b, c := run(1), run(1), run(2)
	if share := float64(len(a)) / 4000; math.Abs(share-0.25) > 0.03 {
		t.Fatalf("exploration share %.3f over 4000 rounds, want 0.25 ± 0.03", share)
	}
	if !slices.Equal(a, b) {
		t.Fatal("the same seed drew different rounds")
	}
	if slices.Equal(a, c) {
		t.Fatal("two seeds drew the same rounds")
	}
}

// A plan depends on the candidates as a set, not on their order.
func TestPlanIgnoresOrder(t *testing.T) {
	base := append(tried(40), newcomers(100, 40)...)
	for i := range base {
		base[i].Score = 0.6 + float64(i%7)/20 // ties, so the ID decides
		base[i].Connected = i%5 == 0 && base[i].Tried
	}
	plan := func(cands []Candidate) (kept, extra, start []peer.ID) {
		p := newPolicy(t, func(c *Config) { c.MinWarm, c.ExploreShare, c.MaxExtra, c.MaxConcurrent = 9, 0.5, 3, 0 })
		var pl Plan
		p.Plan(t0, cands, Load{Links: 8, Streams: 60, Capacity: 64}, 12, &pl)
		return withRole(cands, &pl, Kept), withRole(cands, &pl, Extra), starts(cands, &pl)
	}
	k1, e1, s1 := plan(base)
	shuffled := slices.Clone(base)
	r := rand.New(rand.NewPCG(3, 4))
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	k2, e2, s2 := plan(shuffled)
	if !slices.Equal(k1, k2) || !slices.Equal(e1, e2) || !slices.Equal(s1, s2) {
		t.Fatalf("order changed the plan:\nkept %v\n  vs %v\nextra %v vs %v\nstart %v\n   vs %v", k1, k2, e1, e2, s1, s2)
	}
	if len(k1) != 9 || len(e1) == 0 {
		t.Fatalf("kept %d, extras %d: want 9 and some", len(k1), len(e1))
	}
}

func TestPlanScaling(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm, c.MaxExtra, c.ScaleThreshold = 1, 3, 0.8 })
	cands := tried(10)
	cands[9].State, cands[9].Role, cands[9].Connected = Warm, Kept, true
	var plan Plan

	// 4 links of 8 streams at 0.75: under the threshold.
	p.Plan(t0, cands, Load{Links: 4, Streams: 24, Capacity: 32}, -1, &plan)
	if plan.Extra != 0 || len(withRole(cands, &plan, Extra)) != 0 {
		t.Fatalf("under the threshold: %d extras wanted", plan.Extra)
	}
	// At 30/32 the streams need ⌈30 / 6.4⌉ = 5 links: one extra, the
	// best peer without a link.
	p.Plan(t0, cands, Load{Links: 4, Streams: 30, Capacity: 32}, -1, &plan)
	if plan.Extra != 1 || plan.Roles[8] != Extra || !slices.Equal(plan.Start, []int{8}) {
		t.Fatalf("at 0.94: extra %d, roles %v, start %v; want candidate 8 started as the one extra", plan.Extra, plan.Roles, plan.Start)
	}
	// All 32 slots in use need 5 links too, but one is on its way.
	cands[8].State, cands[8].Role = Warming, Extra
	p.Plan(t0, cands, Load{Links: 4, Streams: 32, Capacity: 32}, -1, &plan)
	if plan.Extra != 0 || len(plan.Start) != 0 || plan.Roles[8] != Extra {
		t.Fatalf("with the extra on its way: extra %d, start %v, role %v", plan.Extra, plan.Start, plan.Roles[8])
	}
	// A surge: never more than MaxExtra extras warm or warming.
	p.Plan(t0, cands, Load{Links: 5, Streams: 200, Capacity: 40}, -1, &plan)
	if plan.Extra != 2 || len(withRole(cands, &plan, Extra)) != 3 {
		t.Fatalf("surge: extra %d, extras %d; want 2 more, 3 in all", plan.Extra, len(withRole(cands, &plan, Extra)))
	}
	// Load gone: the extras keep their role (they expire when idle);
	// none is added.
	cands[8].State = Warm
	p.Plan(t0, cands, Load{Links: 5, Streams: 0, Capacity: 40}, -1, &plan)
	if plan.Extra != 0 || len(plan.Start) != 0 || plan.Roles[8] != Extra {
		t.Fatalf("idle: extra %d, start %v, role %v", plan.Extra, plan.Start, plan.Roles[8])
	}
	// A kept peer that loses its slot counts as an extra: with it, the
	// extras are at MaxExtra.
	cands[7].State, cands[7].Role, cands[7].Connected = Warm, Kept, true
	cands[7].Score = 0.1
	cands[6].State, cands[6].Role = Warming, Extra
	p.Plan(t0, cands, Load{Links: 7, Streams: 200, Capacity: 56}, -1, &plan)
	if plan.Roles[7] != Extra || plan.Extra != 0 || len(plan.Start) != 0 {
		t.Fatalf("displaced: role %v, extra %d, start %v; want it counted as the third extra", plan.Roles[7], plan.Extra, plan.Start)
	}
	cands[6].State, cands[7].State, cands[7].Connected = Cold, Cold, false

	// An extra that goes cold is no longer one.
	cands[8].State = Cold
	p.Plan(t0, cands, Load{Links: 4, Streams: 0, Capacity: 32}, -1, &plan)
	if plan.Roles[8] != None {
		t.Fatalf("a cold extra kept role %v", plan.Roles[8])
	}
}

func TestPlanAllocatesNothing(t *testing.T) {
	p := newPolicy(t, func(c *Config) { c.MinWarm, c.ExploreShare, c.MaxExtra = 16, 0.25, 4 })
	cands := benchCands(2000)
	var plan Plan
	load := Load{Links: 40, Streams: 300, Capacity: 320}
	p.Plan(t0, cands, load, 50, &plan)
	if n := testing.AllocsPerRun(20, func() { p.Plan(t0, cands, load, 50, &plan) }); n != 0 {
		t.Fatalf("Plan allocates %v times per round once warm", n)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"MinWarm", func(c *Config) { c.MinWarm = -1 }},
		{"ExploreShare", func(c *Config) { c.ExploreShare = 1.5 }},
		{"ExploreShare", func(c *Config) { c.ExploreShare = math.NaN() }},
		{"MaxExtra", func(c *Config) { c.MaxExtra = -2 }},
		{"ScaleThreshold", func(c *Config) { c.MaxExtra, c.ScaleThreshold = 1, 0 }},
		{"ScaleThreshold", func(c *Config) { c.ScaleThreshold = 1.2 }},
		{"Stickiness", func(c *Config) { c.Stickiness = math.Inf(1) }},
		{"MaxConcurrent", func(c *Config) { c.MaxConcurrent = -1 }},
		{"RetryInitial", func(c *Config) { c.RetryInitial = -time.Second }},
		{"RetryMax", func(c *Config) { c.RetryMax = time.Millisecond }},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		_, err := New(cfg, rand.New(rand.NewPCG(1, 1)))
		if !errors.Is(err, ErrInvalidConfig) || !contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming it", tc.field, err)
		}
	}
	if _, err := New(DefaultConfig(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil Rand: err = %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
