package balancer

import "sync/atomic"

// LeastLoaded picks the eligible candidate with the lowest Load, scanning
// the whole slice (O(n)). Among equal loads the lower known Latency wins
// (an unknown latency loses to any known one); among candidates equal in
// both, the first one found from a start index that rotates with every
// Pick wins, so exact ties share the traffic in turn instead of all
// landing on the lowest index. With no eligible candidate Pick returns
// ErrNoCandidate. The zero value is ready to use.
type LeastLoaded struct {
	start atomic.Uint64
}

// NewLeastLoaded returns a LeastLoaded.
func NewLeastLoaded() *LeastLoaded { return new(LeastLoaded) }

// Name returns "least_loaded".
func (*LeastLoaded) Name() string { return "least_loaded" }

// Pick returns the least-loaded eligible candidate.
func (l *LeastLoaded) Pick(cands []Candidate, _ []byte) (int, error) {
	n := len(cands)
	if n == 0 {
		return -1, ErrNoCandidate
	}
	start := int((l.start.Add(1) - 1) % uint64(n))
	best := -1
	var bestLoad int
	var bestLat int64
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		c := &cands[i]
		if !c.Eligible() {
			continue
		}
		load, lat := c.load(), int64(latencyRank(c.Latency))
		if best < 0 || load < bestLoad || (load == bestLoad && lat < bestLat) {
			best, bestLoad, bestLat = i, load, lat
		}
	}
	if best < 0 {
		return -1, ErrNoCandidate
	}
	return best, nil
}

// HighestScore picks the eligible candidate with the highest Score,
// scanning the whole slice (O(n)). Ties go to the lower Load, then the
// lower known Latency (unknown loses to known), then the lower ID, so the
// result does not depend on the order of the slice. With no eligible
// candidate Pick returns ErrNoCandidate. The zero value is ready to use.
type HighestScore struct{}

// NewHighestScore returns a HighestScore.
func NewHighestScore() HighestScore { return HighestScore{} }

// Name returns "highest_score".
func (HighestScore) Name() string { return "highest_score" }

// Pick returns the best-scored eligible candidate.
func (HighestScore) Pick(cands []Candidate, _ []byte) (int, error) {
	best := -1
	for i := range cands {
		c := &cands[i]
		if !c.Eligible() {
			continue
		}
		if best < 0 || betterScore(c, &cands[best]) {
			best = i
		}
	}
	if best < 0 {
		return -1, ErrNoCandidate
	}
	return best, nil
}

// betterScore reports whether a ranks strictly before b for HighestScore.
func betterScore(a, b *Candidate) bool {
	if sa, sb := a.score(), b.score(); sa != sb {
		return sa > sb
	}
	if la, lb := a.load(), b.load(); la != lb {
		return la < lb
	}
	if la, lb := latencyRank(a.Latency), latencyRank(b.Latency); la != lb {
		return la < lb
	}
	return a.ID.Less(b.ID)
}

// WeightedRandom picks an eligible candidate at random with probability
// proportional to its Score (clamped to [0, 1]). It reads the slice twice
// (O(n)): once to sum the weights, once to find the drawn one. If every
// eligible candidate scores 0 it picks uniformly among them — they are
// still eligible, so this is no fallback past the eligibility rule. With
// no eligible candidate Pick returns ErrNoCandidate.
type WeightedRandom struct {
	r rng
}

// NewWeightedRandom returns a WeightedRandom whose draws follow seed.
func NewWeightedRandom(seed uint64) *WeightedRandom {
	return &WeightedRandom{r: rng{seed: seed}}
}

// Name returns "weighted_random".
func (*WeightedRandom) Name() string { return "weighted_random" }

// Pick returns a random eligible candidate, weighted by score.
func (w *WeightedRandom) Pick(cands []Candidate, _ []byte) (int, error) {
	var total float64
	eligible, last := 0, -1
	for i := range cands {
		c := &cands[i]
		if c.Eligible() {
			total += c.score()
			eligible++
			last = i
		}
	}
	if eligible == 0 {
		return -1, ErrNoCandidate
	}
	x := w.r.next()
	if !(total > 0) {
		k := below(x, eligible)
		for i := range cands {
			if cands[i].Eligible() {
				if k == 0 {
					return i, nil
				}
				k--
			}
		}
	}
	// A float in [0, total): the top 53 bits of x, scaled.
	target := float64(x>>11) / (1 << 53) * total
	for i := range cands {
		c := &cands[i]
		if !c.Eligible() {
			continue
		}
		if s := c.score(); s > 0 {
			target -= s
			if target < 0 {
				return i, nil
			}
		}
	}
	// Rounding left a sliver of target: it belongs to the last weight.
	for i := last; i >= 0; i-- {
		if cands[i].Eligible() && cands[i].score() > 0 {
			return i, nil
		}
	}
	return last, nil
}
