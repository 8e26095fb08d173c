package score

import (
	"math"
	"testing"
	"time"
)

func def() Config { return Config{}.WithDefaults() }

func sum(b Breakdown) float64 {
	var s float64
	for _, p := range b.Parts {
		s += p.Contribution()
	}
	return s
}

func TestBreakdownAddsUp(t *testing.T) {
	for _, in := range []Inputs{
		{},
		{RTT: 50 * time.Millisecond, RTTPeak: 80 * time.Millisecond, Successes: 10},
		{RTT: time.Second, Errors: 3, Successes: 1, FailedChecks: 1}, // capped by errors
		{Application: 1, Errors: 5},                                  // a good word does not hide errors
		{CircuitOpen: true, RTT: time.Millisecond},
		{Reconnects: 30, Connected: 10 * time.Minute, Application: -1},
	} {
		b := Compute(def(), in)
		if math.Abs(sum(b)-b.Score) > 1e-12 {
			t.Errorf("%+v: parts add up to %v, score %v (%+v)", in, sum(b), b.Score, b.Parts)
		}
		if b.Score < 0 || b.Score > 1 {
			t.Errorf("%+v: score %v outside [0, 1]", in, b.Score)
		}
		if v := Value(def(), in); v != b.Score {
			t.Errorf("Value %v, Compute %v", v, b.Score)
		}
	}
}

func TestScoreOrders(t *testing.T) {
	c := def()
	fast := Value(c, Inputs{RTT: 10 * time.Millisecond, RTTPeak: 10 * time.Millisecond, Successes: 5})
	slow := Value(c, Inputs{RTT: 400 * time.Millisecond, RTTPeak: 400 * time.Millisecond, Successes: 5})
	spiky := Value(c, Inputs{RTT: 10 * time.Millisecond, RTTPeak: 200 * time.Millisecond, Successes: 5})
	if !(fast > spiky && spiky > slow) {
		t.Errorf("fast %v, spiky %v, slow %v: want higher latency to score lower, its peak included", fast, spiky, slow)
	}
	clean := Value(c, Inputs{Successes: 10})
	faulty := Value(c, Inputs{Successes: 10, Errors: 5})
	if faulty >= clean {
		t.Errorf("errors do not lower the score: %v vs %v", faulty, clean)
	}
	if Value(c, Inputs{FailedChecks: 1}) >= Value(c, Inputs{}) {
		t.Error("a failed health check does not lower the score")
	}
	if Value(c, Inputs{FailedChecks: 3}) != 0 {
		t.Error("HealthFailures failed checks in a row do not bring the score to 0")
	}
	if Value(c, Inputs{CircuitOpen: true}) != 0 {
		t.Error("an open circuit does not score 0")
	}
	flapping := Value(c, Inputs{Reconnects: 30, Connected: 10 * time.Minute})
	steady := Value(c, Inputs{Reconnects: 1, Connected: time.Hour})
	if flapping >= steady {
		t.Errorf("flapping %v >= steady %v", flapping, steady)
	}
}

func TestApplicationValue(t *testing.T) {
	c := def()
	neutral := Value(c, Inputs{Successes: 3})
	good := Value(c, Inputs{Successes: 3, Application: 1})
	bad := Value(c, Inputs{Successes: 3, Application: -1})
	if !(good > neutral && neutral > bad) {
		t.Errorf("good %v, neutral %v, bad %v", good, neutral, bad)
	}
	// A positive value cannot lift a failing peer above its errors part.
	b := Compute(c, Inputs{Errors: 3, Application: 1, RTT: time.Millisecond, RTTPeak: time.Millisecond})
	if errs := b.Parts[1].Value; b.Score > errs+1e-12 {
		t.Errorf("score %v above the errors part %v", b.Score, errs)
	}
	if Value(c, Inputs{Application: 7}) != Value(c, Inputs{Application: 1}) {
		t.Error("application values are not clamped to [−1, 1]")
	}
}

func TestWeights(t *testing.T) {
	c := Config{Weights: Weights{Latency: 1}}.WithDefaults()
	if v := Value(c, Inputs{RTT: DefaultReferenceRTT, RTTPeak: DefaultReferenceRTT}); math.Abs(v-0.5) > 1e-12 {
		t.Errorf("latency alone at the reference RTT: %v, want 0.5", v)
	}
	if err := (Config{Weights: Weights{Errors: -1}}).Validate(); err == nil {
		t.Error("a negative weight is valid")
	}
	if err := (Config{ReferenceRTT: -1}).Validate(); err == nil {
		t.Error("a negative ReferenceRTT is valid")
	}
}

func BenchmarkValue(b *testing.B) {
	c := def()
	in := Inputs{RTT: 30 * time.Millisecond, RTTPeak: 60 * time.Millisecond, Successes: 100, Errors: 2, Reconnects: 2, Connected: time.Hour}
	b.ReportAllocs()
	var s float64
	for b.Loop() {
		s += Value(c, in)
	}
	_ = s
}
