package trim_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/peerlink/peerlink/trim"
)

func TestDecayFuncs(t *testing.T) {
	cases := []struct {
		name      string
		f         trim.DecayFunc
		v, n      int
		sinceBump time.Duration
		want      int
		remove    bool
	}{
		{"none", trim.DecayNone(), 7, 1000, time.Hour, 7, false},
		{"fixed", trim.DecayFixed(2), 10, 3, 0, 4, false},
		{"fixed to zero", trim.DecayFixed(2), 10, 5, 0, 0, true},
		{"fixed, huge n", trim.DecayFixed(1), 10, math.MaxInt, 0, 0, true},
		{"linear", trim.DecayLinear(0.5), 100, 2, 0, 25, false},
		{"linear rounds down", trim.DecayLinear(0.5), 3, 1, 0, 1, false},
		{"linear to zero", trim.DecayLinear(0.5), 3, 2, 0, 0, true},
		{"expire: bumped recently", trim.DecayExpireWhenInactive(time.Minute), 5, 3, 59 * time.Second, 5, false},
		{"expire: inactive", trim.DecayExpireWhenInactive(time.Minute), 5, 3, time.Minute, 0, true},
	}
	for _, c := range cases {
		got, rm := c.f(c.v, c.n, c.sinceBump)
		if rm != c.remove || (!rm && got != c.want) {
			t.Errorf("%s: f(%d, %d, %v) = %d, %v; want %d, %v", c.name, c.v, c.n, c.sinceBump, got, rm, c.want, c.remove)
		}
	}
}

func TestBumpFuncs(t *testing.T) {
	if got := trim.BumpSumUnbounded()(5, 3); got != 8 {
		t.Errorf("sum = %d", got)
	}
	if got := trim.BumpSumUnbounded()(math.MaxInt-1, 5); got != math.MaxInt {
		t.Errorf("sum does not saturate: %d", got)
	}
	if got := trim.BumpSumUnbounded()(math.MinInt+1, -5); got != math.MinInt {
		t.Errorf("sum does not saturate below: %d", got)
	}
	if got := trim.BumpSumBounded(0, 10)(8, 5); got != 10 {
		t.Errorf("bounded sum = %d, want 10", got)
	}
	if got := trim.BumpSumBounded(0, 10)(2, -5); got != 0 {
		t.Errorf("bounded sum = %d, want 0", got)
	}
	if got := trim.BumpOverwrite()(8, 5); got != 5 {
		t.Errorf("overwrite = %d", got)
	}
}

func TestDecayingValueLazy(t *testing.T) {
	d := trim.Decay{Interval: 10 * time.Second, DecayBy: trim.DecayFixed(1), BumpBy: trim.BumpSumUnbounded()}
	var v trim.DecayingValue
	if got, ok := d.Value(v, t0); !ok || got != 0 {
		t.Fatalf("a value never bumped = %d, %v", got, ok)
	}
	if got := d.Bump(&v, 5, t0); got != 5 {
		t.Fatalf("first bump = %d", got)
	}
	for _, c := range []struct {
		at   time.Duration
		want int
	}{{9 * time.Second, 5}, {10 * time.Second, 4}, {25 * time.Second, 3}, {29 * time.Second, 3}, {30 * time.Second, 2}} {
		if got, ok := d.Value(v, t0.Add(c.at)); !ok || got != c.want {
			t.Fatalf("at %v: %d (kept %v), want %d", c.at, got, ok, c.want)
		}
	}
	// A bump first applies the decay due, and restarts the intervals.
	if got := d.Bump(&v, 10, t0.Add(45*time.Second)); got != 11 {
		t.Fatalf("bump at 45 s = %d, want 1 + 10", got)
	}
	if got, _ := d.Value(v, t0.Add(54*time.Second)); got != 11 {
		t.Fatalf("9 s after the bump: %d, want 11", got)
	}
	if _, ok := d.Value(v, t0.Add(time.Hour)); ok {
		t.Fatal("not removed after decaying to 0")
	}
	// A bump after removal starts afresh.
	if got := d.Bump(&v, 4, t0.Add(time.Hour)); got != 4 {
		t.Fatalf("bump of a decayed-away value = %d, want 4", got)
	}
}

// TestDecayingValueReadOftenOrRarely: the value does not depend on how
// often it is read (rounding does not compound).
func TestDecayingValueReadOftenOrRarely(t *testing.T) {
	d := trim.Decay{Interval: time.Second, DecayBy: trim.DecayLinear(0.8), BumpBy: trim.BumpSumUnbounded()}
	var v trim.DecayingValue
	d.Bump(&v, 1000, t0)
	want := map[int]int{1: 800, 2: 640, 5: 327, 10: 107, 20: 11}
	for s := 1; s <= 20; s++ {
		got, ok := d.Value(v, t0.Add(time.Duration(s)*time.Second))
		if w, check := want[s]; check && (!ok || got != w) {
			t.Fatalf("after %d s: %d, want %d", s, got, w)
		}
	}
}

func TestDecayValidate(t *testing.T) {
	ok := trim.Decay{Interval: time.Second, DecayBy: trim.DecayNone(), BumpBy: trim.BumpOverwrite()}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]trim.Decay{
		"Interval": {DecayBy: trim.DecayNone(), BumpBy: trim.BumpOverwrite()},
		"DecayBy":  {Interval: time.Second, BumpBy: trim.BumpOverwrite()},
		"BumpBy":   {Interval: time.Second, DecayBy: trim.DecayNone()},
	} {
		err := d.Validate()
		if !errors.Is(err, trim.ErrInvalidDecay) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func ExampleDecay() {
	// go-libp2p-pubsub's first-delivery tag: +1 per delivery up to 15,
	// minus 1 every 10 minutes.
	d := trim.Decay{Interval: 10 * time.Minute, DecayBy: trim.DecayFixed(1), BumpBy: trim.BumpSumBounded(0, 15)}
	now := time.Unix(1_000_000, 0)
	var v trim.DecayingValue
	for range 20 {
		d.Bump(&v, 1, now)
	}
	val, _ := d.Value(v, now)
	fmt.Println(val)
	val, _ = d.Value(v, now.Add(35*time.Minute))
	fmt.Println(val)
	// Output:
	// 15
	// 12
}
