package balancer

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// countingSet is a Set over a slice that counts the candidates read.
type countingSet struct {
	cs    []Candidate
	reads int
}

func (s *countingSet) Len() int { return len(s.cs) }
func (s *countingSet) At(i int) Candidate {
	s.reads++
	return s.cs[i]
}

// mixed returns n candidates of varied load, latency and score, every
// fifth unhealthy and every seventh with its circuit open.
func mixed(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{
			ID: testID(i), Score: float64(1+i%10) / 10, Load: i % 7,
			Latency: time.Duration(1+i%13) * time.Millisecond,
			Healthy: i%5 != 0, CircuitOpen: i%7 == 3,
		}
	}
	return cs
}

// Every strategy picks from a Set (through PickFrom) exactly what it
// picks from the same candidates as a slice, with the same seed; the
// strategies that draw read a handful of candidates, not all of them.
func TestPickFromSetMatchesPick(t *testing.T) {
	const n, picks = 1000, 500
	cs := mixed(n)
	for _, s := range strategies() {
		t.Run(s.name, func(t *testing.T) {
			bySlice, bySet := s.new(), s.new()
			set := &countingSet{cs: cs}
			var buf []Candidate
			for k := range picks {
				key := fmt.Appendf(nil, "key-%d", k)
				want, werr := bySlice.Pick(cs, key)
				var got int
				var err error
				got, buf, err = PickFrom(bySet, set, key, buf)
				if got != want || err != werr {
					t.Fatalf("pick %d: set %d (%v), slice %d (%v)", k, got, err, want, werr)
				}
				if !cs[got].Eligible() {
					t.Fatalf("pick %d: ineligible candidate %d", k, got)
				}
			}
			perPick := float64(set.reads) / picks
			_, draws := bySet.(SetPicker)
			t.Logf("%.1f candidates read per pick", perPick)
			if draws && perPick > 8 {
				t.Errorf("%.1f candidates read per pick, want a few (it draws)", perPick)
			}
			if !draws && perPick != n {
				t.Errorf("%.1f candidates read per pick, want all %d (it scans)", perPick, n)
			}
		})
	}
}

// A Set with no eligible candidate gives ErrNoCandidate, as a slice does.
func TestPickSetNoCandidate(t *testing.T) {
	for _, s := range strategies() {
		for _, cs := range [][]Candidate{nil, {{ID: testID(1), Healthy: false}, {ID: testID(2), Healthy: true, CircuitOpen: true}}} {
			if _, _, err := PickFrom(s.new(), &countingSet{cs: cs}, nil, nil); !errors.Is(err, ErrNoCandidate) {
				t.Errorf("%s over %d ineligible: %v, want ErrNoCandidate", s.name, len(cs), err)
			}
		}
	}
}
