package balancer

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// byCost returns n eligible candidates whose P2C cost rises with the
// index: candidate 0 is the cheapest.
func byCost(n int) []Candidate {
	cs := healthy(n)
	for i := range cs {
		cs[i].Score = 1
		cs[i].Latency = time.Duration(10+i) * time.Millisecond
	}
	return cs
}

// With Choices d, a pick lands on the cheapest of n candidates exactly
// when the cheapest is among the d drawn: 1 − C(n−1, d)/C(n, d) = d/n,
// the figure the simulation's best-pick share is judged against (2/8
// for classic P2C among 8 peers).
func TestP2CChoicesBestShare(t *testing.T) {
	const n, picks = 8, 40_000
	cs := byCost(n)
	for _, d := range []int{0, 2, 3, 5} {
		p := NewP2C(P2COptions{Seed: 3, Choices: d})
		best, worst := 0, 0
		for range picks {
			i, err := p.Pick(cs, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch i {
			case 0:
				best++
			case n - 1:
				worst++ // never: some other drawn candidate is cheaper
			}
		}
		want := float64(max(d, 2)) / n
		if got := float64(best) / picks; math.Abs(got-want) > 0.015 || worst != 0 {
			t.Errorf("Choices %d: cheapest picked %.3f of the time (want %.3f), the dearest %d times (want 0)", d, got, want, worst)
		}
	}
}

// With Choices at least the candidates' number, a pick is the cheapest
// eligible candidate (least cost); ineligible ones are never picked, and
// with none eligible the pick fails.
func TestP2CChoicesAll(t *testing.T) {
	cs := byCost(6)
	cs[0].Healthy = false    // the cheapest is down
	cs[1].CircuitOpen = true // the next one's circuit is open
	cs[4].Load = -3          // counts as 0
	for _, d := range []int{6, 7, MaxChoices, 1000} {
		p := NewP2C(P2COptions{Seed: 1, Choices: d})
		for range 100 {
			if i, err := p.Pick(cs, nil); i != 2 || err != nil {
				t.Fatalf("Choices %d: picked %d (%v), want 2, the cheapest eligible", d, i, err)
			}
		}
	}
	// Equal costs: every tied candidate gets picks, not just the first.
	tied := healthy(4)
	p := NewP2C(P2COptions{Seed: 2, Choices: 4})
	seen := map[int]bool{}
	for range 200 {
		i, _ := p.Pick(tied, nil)
		seen[i] = true
	}
	if len(seen) != 4 {
		t.Errorf("equal costs: picked %v, want all 4 in turn", seen)
	}
	down := byCost(5)
	for i := range down {
		down[i].Healthy = false
	}
	for _, d := range []int{3, 5} {
		if i, err := NewP2C(P2COptions{Choices: d}).Pick(down, nil); !errors.Is(err, ErrNoCandidate) || i != -1 {
			t.Errorf("Choices %d, none eligible: %d, %v; want -1, ErrNoCandidate", d, i, err)
		}
	}
}

// With most candidates ineligible the draws fall back to a scan, which
// still picks an eligible one, the cheapest of them.
func TestP2CChoicesFewEligible(t *testing.T) {
	cs := byCost(1000)
	for i := range cs {
		cs[i].Healthy = i == 500 || i == 900
	}
	p := NewP2C(P2COptions{Seed: 4, Choices: 3})
	for range 50 {
		if i, err := p.Pick(cs, nil); i != 500 || err != nil {
			t.Fatalf("picked %d (%v), want 500, the cheaper of the two eligible", i, err)
		}
	}
}

// PickSet with Choices picks what Pick picks for the same seed, reading
// about Choices candidates, and neither allocates.
func TestP2CChoicesSet(t *testing.T) {
	const n, picks = 1000, 500
	cs := mixed(n)
	for _, d := range []int{3, 4} {
		t.Run(fmt.Sprint("choices=", d), func(t *testing.T) {
			bySlice, bySet := NewP2C(P2COptions{Seed: 7, Choices: d}), NewP2C(P2COptions{Seed: 7, Choices: d})
			set := &countingSet{cs: cs}
			for k := range picks {
				want, werr := bySlice.Pick(cs, nil)
				got, _, err := PickFrom(bySet, set, nil, nil)
				if got != want || err != werr {
					t.Fatalf("pick %d: set %d (%v), slice %d (%v)", k, got, err, want, werr)
				}
			}
			// Two in three of mixed's candidates are eligible: about
			// 1.5 reads per choice.
			if perPick := float64(set.reads) / picks; perPick > 2*float64(d) {
				t.Errorf("%.1f candidates read per pick, want about %d", perPick, d)
			}
			if raceEnabled {
				return
			}
			if a := testing.AllocsPerRun(100, func() { bySlice.Pick(cs, nil) }); a != 0 {
				t.Errorf("%v allocations per Pick", a)
			}
			if a := testing.AllocsPerRun(100, func() { bySet.PickSet(set, nil) }); a != 0 {
				t.Errorf("%v allocations per PickSet", a)
			}
		})
	}
}

func BenchmarkP2CChoices(b *testing.B) {
	for _, n := range []int{8, 1000} {
		cands := benchCands(n)
		for _, d := range []int{2, 3, MaxChoices} {
			b.Run(fmt.Sprintf("n=%d/choices=%d", n, d), func(b *testing.B) {
				p := NewP2C(P2COptions{Seed: 1, Choices: d})
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.Pick(cands, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
