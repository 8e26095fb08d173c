package metrics

import (
	"math"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestEWMA(t *testing.T) {
	hl := time.Second
	e := NewEWMA(hl)
	if e.Value() != 0 {
		t.Fatalf("empty Value = %v", e.Value())
	}
	e.Observe(100, t0)
	if e.Value() != 100 {
		t.Fatalf("first sample: Value = %v, want 100 (no warm-up from 0)", e.Value())
	}
	// One half-life later the old sample weighs 1/2 against the new one's 1.
	e.Observe(200, t0.Add(hl))
	if want := 100 + 100/1.5; !near(e.Value(), want) {
		t.Fatalf("after a half-life: Value = %v, want %v", e.Value(), want)
	}
	// Two samples at the same instant count alike.
	s := NewEWMA(hl)
	s.Observe(100, t0)
	s.Observe(300, t0)
	if !near(s.Value(), 200) {
		t.Fatalf("same instant: Value = %v, want 200", s.Value())
	}
	// An earlier time counts as the same instant as the latest sample.
	s.Observe(200, t0.Add(-time.Hour))
	if !near(s.Value(), 200) {
		t.Fatalf("earlier time: Value = %v, want 200", s.Value())
	}
	// After a long silence a new sample all but replaces the old ones.
	s.Observe(1000, t0.Add(20*hl))
	if want := 200 + 800/(3*math.Exp2(-20)+1); !near(s.Value(), want) {
		t.Fatalf("after silence: Value = %v, want %v", s.Value(), want)
	}
	snap := s.Snapshot()
	if snap.Samples != 4 || snap.At != t0.Add(20*hl).UnixNano() || snap.Value != s.Value() {
		t.Fatalf("snapshot %+v", snap)
	}
}

func TestEWMAIrregularSampling(t *testing.T) {
	// Ten samples of 0 in one burst, then one of 100 a half-life later,
	// weigh the burst as 10·(1/2) = 5 against 1, whatever its size in
	// samples-per-second.
	e := NewEWMA(time.Second)
	for range 10 {
		e.Observe(0, t0)
	}
	e.Observe(100, t0.Add(time.Second))
	if want := 100.0 / 6; !near(e.Value(), want) {
		t.Fatalf("Value = %v, want %v", e.Value(), want)
	}
}

func TestPeakEWMA(t *testing.T) {
	hl := time.Second
	p := NewPeakEWMA(hl)
	p.Observe(100, t0)
	p.Observe(200, t0.Add(time.Millisecond))
	if p.Value() != 200 {
		t.Fatalf("a higher sample should replace the value at once: %v", p.Value())
	}
	p.Observe(100, t0.Add(time.Millisecond+hl))
	if !near(p.Value(), 150) {
		t.Fatalf("one half-life toward 100: %v, want 150", p.Value())
	}
	p.Observe(100, t0.Add(time.Millisecond+2*hl))
	if !near(p.Value(), 125) {
		t.Fatalf("two half-lives toward 100: %v, want 125", p.Value())
	}
	p.Observe(0, t0.Add(time.Millisecond+2*hl))
	if !near(p.Value(), 125) {
		t.Fatalf("a lower sample at the same instant should not move it: %v", p.Value())
	}
	if s := p.Snapshot(); s.Samples != 5 || s.Value != p.Value() {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestDecayingCounter(t *testing.T) {
	hl := 10 * time.Second
	d := NewDecayingCounter(hl)
	if d.Value(t0) != 0 {
		t.Fatal("empty counter not 0")
	}
	d.Add(1, t0)
	d.Add(1, t0)
	if !near(d.Value(t0), 2) || !near(d.Value(t0.Add(hl)), 1) || !near(d.Value(t0.Add(3*hl)), 0.25) {
		t.Fatalf("values %v %v %v", d.Value(t0), d.Value(t0.Add(hl)), d.Value(t0.Add(3*hl)))
	}
	d.Add(1, t0.Add(hl))
	if !near(d.Value(t0.Add(2*hl)), 1) {
		t.Fatalf("after a second add: %v, want 1", d.Value(t0.Add(2*hl)))
	}
	// Times before the latest add neither decay nor grow the count.
	if !near(d.Value(t0), 2) {
		t.Fatalf("earlier time: %v, want 2", d.Value(t0))
	}
	d.Add(2, t0)
	if !near(d.Value(t0.Add(hl)), 4) {
		t.Fatalf("late add: %v, want 4", d.Value(t0.Add(hl)))
	}
}

func TestEWMAConcurrent(t *testing.T) {
	e := NewEWMA(time.Second)
	p := NewPeakEWMA(time.Second)
	d := NewDecayingCounter(time.Hour)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				now := t0.Add(time.Duration(w*1000+i) * time.Microsecond)
				e.Observe(7, now)
				p.Observe(7, now)
				d.Add(1, t0)
				_ = e.Value() + p.Value() + d.Value(now)
			}
		})
	}
	wg.Wait()
	if !near(e.Value(), 7) || !near(p.Value(), 7) || !near(d.Value(t0), 8000) {
		t.Fatalf("EWMA %v PeakEWMA %v DecayingCounter %v", e.Value(), p.Value(), d.Value(t0))
	}
	if e.Snapshot().Samples != 8000 || p.Snapshot().Samples != 8000 {
		t.Fatal("samples lost")
	}
}
