package balancer

import (
	"slices"
	"time"
)

// DefaultUnknownLatency is the latency P2C assumes for a candidate with no
// RTT sample yet, as tower's peak-EWMA balancer does: a pessimistic 1 s,
// so a fresh peer is tried only when the known ones are slow or busy,
// and not flooded before its first measurement.
const DefaultUnknownLatency = time.Second

// DefaultScoreFloor is the lowest score P2C divides by (see P2C).
const DefaultScoreFloor = 0.01

// P2COptions configure a P2C. The zero value gives the defaults.
type P2COptions struct {
	// Seed drives the random draws; the same seed gives the same picks
	// for the same sequence of calls from one goroutine.
	Seed uint64
	// UnknownLatency stands in for a candidate's Latency while it is 0
	// (no sample). 0 means DefaultUnknownLatency.
	UnknownLatency time.Duration
	// ScoreFloor bounds the error penalty: the score is raised to at least
	// this before the cost is divided by it, so a score-0 peer costs
	// 1/ScoreFloor times as much as a perfect one. 0 means
	// DefaultScoreFloor; values are capped to (0, 1].
	ScoreFloor float64
	// IgnoreScore leaves the error penalty out: pure Finagle peak EWMA.
	IgnoreScore bool
	// Choices is how many distinct eligible candidates a pick draws and
	// compares: 2 if 0 (power of two choices), at most MaxChoices; with
	// at least as many as there are candidates, a pick compares them all
	// (least cost). More choices find the cheapest peer more often when
	// load is light, and spread load less when every requester sees the
	// same cheapest peer (the herd P2C avoids); see P2C.
	Choices int
}

// MaxChoices bounds P2COptions.Choices.
const MaxChoices = 16

// P2C is the power-of-two-choices balancer with Finagle's peak-EWMA cost:
// it draws two distinct eligible candidates uniformly at random and picks
// the one of lower cost,
//
//	cost = latency × (load + 1) / max(score, ScoreFloor)
//
// where latency is the candidate's peak-EWMA RTT (UnknownLatency while it
// has none), load its outstanding work and score its quality in [0, 1].
// latency × (load + 1) is Finagle's estimate of how long a new request
// would wait there. Peak EWMA alone favours a peer that fails fast
// (linkerd2-proxy#4537): its errors come back quickly and look like a low
// latency. Dividing by the score counts them: if the score tracks the
// success rate, the cost is the expected time per successful request, so
// a peer ten times faster that succeeds one time in twenty costs twice as
// much. Set IgnoreScore to compare latency × (load + 1) alone. Equal costs
// go to the first of the two draws, itself random.
//
// P2COptions.Choices draws d candidates instead of two (power of d
// choices); with d at least the candidates' number, Pick is least cost.
// Two is Finagle's and tower's choice, made for many clients sharing a
// few servers, where a herd of clients that all see the same cheapest
// server would swamp it. A peer's candidates are its own links and a
// server's clients are its few neighbours: in package simulation's
// BenchmarkWorkload (100 nodes of degree 6, three seeds) 3 choices beat 2
// at light load (the truly fastest peer picked 43–47 % of the time
// instead of 30–32 %, mean regret 1.15 instead of 1.21–1.24) and under
// load (p99 latency 760–790 ms instead of 900–940, no refusals), and
// more choices did better still; the default stays 2 until a scenario
// where many requesters share one view of their peers says otherwise.
//
// With one eligible candidate Pick returns it; with none, ErrNoCandidate.
// A draw that lands on an ineligible candidate is redrawn, up to 16 times,
// before Pick takes the next eligible one after the last draw, so a pick
// is O(1) expected while most candidates are eligible and scans the slice
// only when few or none are. It allocates nothing and takes no lock.
type P2C struct {
	r          rng
	unknown    float64
	scoreFloor float64
	useScore   bool
	choices    int
}

// NewP2C returns a P2C configured by opts.
func NewP2C(opts P2COptions) *P2C {
	p := &P2C{
		r:          rng{seed: opts.Seed},
		unknown:    float64(DefaultUnknownLatency),
		scoreFloor: DefaultScoreFloor,
		useScore:   !opts.IgnoreScore,
		choices:    2,
	}
	if opts.Choices > 2 {
		p.choices = min(opts.Choices, MaxChoices)
	}
	if opts.UnknownLatency > 0 {
		p.unknown = float64(opts.UnknownLatency)
	}
	if opts.ScoreFloor > 0 {
		p.scoreFloor = min(opts.ScoreFloor, 1)
	}
	return p
}

// Name returns "p2c_peak_ewma".
func (*P2C) Name() string { return "p2c_peak_ewma" }

// Cost returns the cost P2C gives c (lower is better), for callers that
// want to log or explain a pick.
func (p *P2C) Cost(c *Candidate) float64 {
	lat := p.unknown
	if c.Latency > 0 {
		lat = float64(c.Latency)
	}
	cost := lat * float64(c.load()+1)
	if p.useScore {
		cost /= max(c.score(), p.scoreFloor)
	}
	return cost
}

// Pick returns the cheaper of two (Choices) random eligible candidates.
func (p *P2C) Pick(cands []Candidate, _ []byte) (int, error) {
	if p.choices > 2 {
		return pickCheapest(p, loaded(cands))
	}
	a, b := pickTwo(&p.r, slice(cands))
	if a < 0 {
		return -1, ErrNoCandidate
	}
	if b < 0 || p.Cost(&cands[a]) <= p.Cost(&cands[b]) {
		return a, nil
	}
	return b, nil
}

// PickSet is Pick over a Set, reading the two candidates it draws.
func (p *P2C) PickSet(set Set, _ []byte) (int, error) {
	if p.choices > 2 {
		return pickCheapest(p, lazy{set})
	}
	a, b, ca, cb, err := drawTwo(&p.r, set)
	if err != nil || b < 0 || p.Cost(&ca) <= p.Cost(&cb) {
		return a, err
	}
	return b, nil
}

// drawTwo is pickTwo over a Set, with the two candidates drawn loaded; b
// is -1 if only one is eligible, and err is ErrNoCandidate if none is.
func drawTwo(r *rng, set Set) (a, b int, ca, cb Candidate, err error) {
	a, b = pickTwo(r, lazy{set})
	if a < 0 {
		return -1, -1, ca, cb, ErrNoCandidate
	}
	ca = set.At(a)
	if b >= 0 {
		cb = set.At(b)
	}
	return a, b, ca, cb, nil
}

// LeastLoadedOfTwo is power of two choices on load alone, as Envoy's
// least_request and gRPC's default: it draws two distinct eligible
// candidates uniformly at random and picks the lower Load; equal loads go
// to the lower known Latency (unknown loses to known), then to the first
// draw. With one eligible candidate Pick returns it; with none,
// ErrNoCandidate. It allocates nothing and takes no lock.
type LeastLoadedOfTwo struct {
	r rng
}

// NewLeastLoadedOfTwo returns a LeastLoadedOfTwo whose draws follow seed.
func NewLeastLoadedOfTwo(seed uint64) *LeastLoadedOfTwo {
	return &LeastLoadedOfTwo{r: rng{seed: seed}}
}

// Name returns "least_loaded_of_two".
func (*LeastLoadedOfTwo) Name() string { return "least_loaded_of_two" }

// Pick returns the less loaded of two random eligible candidates.
func (l *LeastLoadedOfTwo) Pick(cands []Candidate, _ []byte) (int, error) {
	a, b := pickTwo(&l.r, slice(cands))
	if a < 0 {
		return -1, ErrNoCandidate
	}
	if b < 0 {
		return a, nil
	}
	return lessLoaded(a, b, &cands[a], &cands[b]), nil
}

// PickSet is Pick over a Set, reading the two candidates it draws.
func (l *LeastLoadedOfTwo) PickSet(set Set, _ []byte) (int, error) {
	a, b, ca, cb, err := drawTwo(&l.r, set)
	if err != nil || b < 0 {
		return a, err
	}
	return lessLoaded(a, b, &ca, &cb), nil
}

// lessLoaded returns the index of the lower Load of two candidates, then
// of the lower known Latency, then a.
func lessLoaded(a, b int, ca, cb *Candidate) int {
	if la, lb := ca.load(), cb.load(); la != lb {
		if la < lb {
			return a
		}
		return b
	}
	if latencyRank(cb.Latency) < latencyRank(ca.Latency) {
		return b
	}
	return a
}

// pickTwo draws two distinct eligible indexes; b is -1 if only one
// candidate is eligible, and both are -1 if none is. The common case —
// both first draws eligible — takes one 64-bit draw, split in two 32-bit
// halves (bias n/2³², under 10⁻⁵ for n below 40,000), so one atomic add
// per pick; a draw that lands on an ineligible candidate falls back to
// randomEligible.
func pickTwo[E eligibles](r *rng, cands E) (a, b int) {
	n := cands.Len()
	if n == 0 {
		return -1, -1
	}
	x := r.next()
	a = below32(uint32(x>>32), n)
	if !cands.Eligible(a) {
		if a = randomEligible(r, cands, -1); a < 0 {
			return -1, -1
		}
	}
	if n == 1 {
		return a, -1
	}
	b = below32(uint32(x), n-1)
	if b >= a {
		b++
	}
	if !cands.Eligible(b) {
		b = randomEligible(r, cands, a)
	}
	return a, b
}

// below32 returns a number in [0, n) from v (multiply-shift). n > 0.
func below32(v uint32, n int) int { return int(uint64(v) * uint64(n) >> 32) }

// readable is a candidate set whose candidates pickCheapest reads: a
// slice, or a Set built on demand.
type readable interface {
	Len() int
	At(i int) Candidate
}

// loaded is a slice as a readable (lazy is a Set as one).
type loaded []Candidate

func (l loaded) Len() int           { return len(l) }
func (l loaded) At(i int) Candidate { return l[i] }

func (l lazy) At(i int) Candidate { return l.s.At(i) }

// pickCheapest returns the cheapest of p.choices distinct eligible
// candidates drawn uniformly (ties to the earlier draw), or of every
// eligible one when there are no more candidates than that. Each draw
// reads one candidate; a draw that lands on an ineligible or already
// drawn one is redrawn, up to randomTries times per choice, after which
// the pick compares every eligible candidate (few are eligible then: a
// scan). It allocates nothing.
func pickCheapest[R readable](p *P2C, cands R) (int, error) {
	n := cands.Len()
	if n > p.choices {
		var drawn [MaxChoices]int
		k, best, bestCost := 0, -1, 0.0
		for t := 0; t < randomTries*p.choices && k < p.choices; t++ {
			i := below(p.r.next(), n)
			if slices.Contains(drawn[:k], i) {
				continue
			}
			c := cands.At(i)
			if !c.Eligible() {
				continue
			}
			drawn[k] = i
			k++
			if cost := p.Cost(&c); best < 0 || cost < bestCost {
				best, bestCost = i, cost
			}
		}
		if k == p.choices {
			return best, nil
		}
	}
	// Few candidates, or few eligible: compare them all, starting at a
	// random one so that equal costs do not always go to the first.
	best, bestCost := -1, 0.0
	start := below(p.r.next(), max(n, 1))
	for j := range n {
		i := start + j
		if i >= n {
			i -= n
		}
		c := cands.At(i)
		if !c.Eligible() {
			continue
		}
		if cost := p.Cost(&c); best < 0 || cost < bestCost {
			best, bestCost = i, cost
		}
	}
	if best < 0 {
		return -1, ErrNoCandidate
	}
	return best, nil
}
