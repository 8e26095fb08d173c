package health_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/peerlink/peerlink/health"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestNeedsCheck(t *testing.T) {
	const idle = 10 * time.Second
	s := health.NewState(t0)
	never := time.Time{}

	// A new link counts as checked when it came up.
	if s.NeedsCheck(at(9*time.Second), never, idle) {
		t.Error("needs a check before IdleThreshold has passed since it came up")
	}
	if !s.NeedsCheck(at(10*time.Second), never, idle) {
		t.Error("no check needed after IdleThreshold of silence")
	}

	// Activity postpones the check: idle counts from the last byte.
	if s.NeedsCheck(at(12*time.Second), at(5*time.Second), idle) {
		t.Error("needs a check 7s after activity")
	}
	if !s.NeedsCheck(at(15*time.Second), at(5*time.Second), idle) {
		t.Error("no check needed 10s after the last activity")
	}

	// So does a check: idle counts from the later of the two.
	s.Observe(health.Result{Healthy: true, RTT: time.Millisecond, Time: at(20 * time.Second)})
	if s.NeedsCheck(at(29*time.Second), at(5*time.Second), idle) {
		t.Error("needs a check 9s after the last check")
	}
	if !s.NeedsCheck(at(30*time.Second), at(5*time.Second), idle) {
		t.Error("no check needed 10s after the last check")
	}
	if s.NeedsCheck(at(30*time.Second), at(29*time.Second), idle) {
		t.Error("needs a check right after activity")
	}

	// An error forces a check, however recent the activity.
	s.RecordError()
	s.RecordError()
	if !s.NeedsCheck(at(30*time.Second), at(30*time.Second), idle) {
		t.Error("no check needed with errors recorded")
	}
	if got := s.Snapshot().ErrorsSinceCheck; got != 2 {
		t.Errorf("ErrorsSinceCheck %d, want 2", got)
	}
	// A check clears the errors.
	s.Observe(health.Result{Healthy: true, RTT: time.Millisecond, Time: at(31 * time.Second)})
	if s.NeedsCheck(at(32*time.Second), at(30*time.Second), idle) {
		t.Error("still needs a check after one cleared the errors")
	}
	if got := s.Snapshot(); got.ErrorsSinceCheck != 0 || !got.LastCheck.Equal(at(31*time.Second)) {
		t.Errorf("after a check: ErrorsSinceCheck %d LastCheck %v", got.ErrorsSinceCheck, got.LastCheck)
	}

	// An older result does not move the last check back.
	s.Observe(health.Result{Healthy: true, RTT: time.Millisecond, Time: at(25 * time.Second)})
	if got := s.Snapshot().LastCheck; !got.Equal(at(31 * time.Second)) {
		t.Errorf("LastCheck moved back to %v", got)
	}
}

// TestNeedsCheckFailing: a link whose last check failed needs another at
// once while nothing arrives, not IdleThreshold after that check; bytes
// arriving end that, and idle counts from them again.
func TestNeedsCheckFailing(t *testing.T) {
	const idle = 10 * time.Second
	s := health.NewState(t0)
	s.Observe(health.Result{Err: errRefused, Time: at(10 * time.Second)})
	if !s.NeedsCheck(at(10*time.Second+time.Millisecond), at(5*time.Second), idle) {
		t.Error("no check needed right after a failed one, nothing arrived since")
	}
	if !s.NeedsCheck(at(19*time.Second+999*time.Millisecond), at(5*time.Second), idle) {
		t.Error("no check needed 1ms short of IdleThreshold after a failed one")
	}
	// Bytes arrived after the failed check: idle counts from them.
	if s.NeedsCheck(at(12*time.Second), at(11*time.Second), idle) {
		t.Error("needs a check 1s after bytes arrived")
	}
	if !s.NeedsCheck(at(21*time.Second), at(11*time.Second), idle) {
		t.Error("no check needed IdleThreshold after the bytes")
	}
	// A success ends the run: idle counts from the check again.
	s.Observe(health.Result{Healthy: true, RTT: time.Millisecond, Time: at(30 * time.Second)})
	if s.NeedsCheck(at(39*time.Second), at(5*time.Second), idle) {
		t.Error("needs a check 9s after a successful one")
	}
}

func TestNeedsCheckMonotonic(t *testing.T) {
	// Times from time.Now carry a monotonic reading; a State compares on it.
	now := time.Now()
	s := health.NewState(now)
	if s.NeedsCheck(now.Add(time.Second), time.Time{}, 10*time.Second) {
		t.Error("needs a check 1s after it came up")
	}
	if !s.NeedsCheck(now.Add(10*time.Second), time.Time{}, 10*time.Second) {
		t.Error("no check needed after 10s")
	}
}

func TestObserveDead(t *testing.T) {
	fail := func(s *health.State, i int) bool {
		return s.Observe(health.Result{Err: errRefused, Time: at(time.Duration(i) * time.Second)})
	}
	ok := func(s *health.State, i int) bool {
		return s.Observe(health.Result{Healthy: true, RTT: time.Millisecond, Time: at(time.Duration(i) * time.Second)})
	}

	for _, k := range []int{1, 3, 5} {
		s := health.Config{FailureThreshold: k}.NewState(t0)
		i := 0
		// k-1 failures, a success: the run starts over.
		for range k - 1 {
			i++
			if fail(s, i) {
				t.Fatalf("k=%d: dead after %d failures", k, i)
			}
		}
		i++
		if ok(s, i) {
			t.Fatalf("k=%d: dead on a success", k)
		}
		if got := s.Snapshot().ConsecutiveFailures; got != 0 {
			t.Fatalf("k=%d: %d consecutive failures after a success", k, got)
		}
		// Exactly the k-th failure in a row is fatal.
		for j := 1; j <= k; j++ {
			i++
			if dead := fail(s, i); dead != (j == k) {
				t.Fatalf("k=%d: failure %d in a row: dead=%v", k, j, dead)
			}
		}
		// Only once, whatever follows.
		for range 2 * k {
			i++
			if fail(s, i) {
				t.Fatalf("k=%d: declared dead twice", k)
			}
		}
		i++
		ok(s, i)
		for range k {
			i++
			if fail(s, i) {
				t.Fatalf("k=%d: declared dead again after a success", k)
			}
		}
		st := s.Snapshot()
		if !st.Dead || st.Failures != uint64(k-1+k+2*k+k) || st.Samples != 2 || !errors.Is(st.LastErr, errRefused) {
			t.Fatalf("k=%d: stats %+v", k, st)
		}
		if s.NeedsCheck(at(time.Hour), time.Time{}, time.Second) {
			t.Fatalf("k=%d: a dead link needs a check", k)
		}
	}

	// NewState: DefaultFailureThreshold.
	s := health.NewState(t0)
	for i := 1; i <= health.DefaultFailureThreshold; i++ {
		if dead := fail(s, i); dead != (i == health.DefaultFailureThreshold) {
			t.Fatalf("NewState: failure %d: dead=%v", i, dead)
		}
	}

	// A Skipped result (bytes arrived) ends a run, without a sample.
	s = health.NewState(t0)
	fail(s, 1)
	fail(s, 2)
	if s.Observe(health.Result{Healthy: true, Skipped: true, Time: at(3 * time.Second)}) {
		t.Fatal("dead on a skipped check")
	}
	fail(s, 4)
	if fail(s, 5) {
		t.Fatal("dead on the 2nd failure after activity")
	}
	if st := s.Snapshot(); st.Samples != 0 || st.ConsecutiveFailures != 2 || st.Failures != 4 {
		t.Fatalf("after a skipped check: %+v", st)
	}
}

func TestEWMA(t *testing.T) {
	s := health.NewState(t0)
	if st := s.Snapshot(); st.RTTEWMA != 0 || st.Samples != 0 || !st.LastCheck.IsZero() {
		t.Fatalf("new state: %+v", st)
	}
	steps := []struct {
		rtt, ewma time.Duration
	}{
		{100 * time.Millisecond, 100 * time.Millisecond}, // the first sample as it is
		{200 * time.Millisecond, 120 * time.Millisecond}, // 100 + 0.2*(200-100)
		{0, 96 * time.Millisecond},                       // 120 - 0.2*120
		{time.Second, 276800 * time.Microsecond},         // 96 + 0.2*904
		{276800 * time.Microsecond, 276800 * time.Microsecond},
	}
	for i, st := range steps {
		s.Observe(health.Result{Healthy: true, RTT: st.rtt, Time: at(time.Duration(i) * time.Second)})
		if i == 2 {
			// A failure is no RTT sample.
			s.Observe(health.Result{Err: errRefused, Time: at(time.Duration(i) * time.Second)})
		}
		got := s.Snapshot()
		if got.RTTEWMA != st.ewma || got.LastRTT != st.rtt || got.Samples != uint64(i+1) {
			t.Fatalf("after sample %d (%v): EWMA %v LastRTT %v Samples %d, want %v %v %d",
				i, st.rtt, got.RTTEWMA, got.LastRTT, got.Samples, st.ewma, st.rtt, i+1)
		}
	}
	// Converges to a steady RTT.
	for i := range 100 {
		s.Observe(health.Result{Healthy: true, RTT: 50 * time.Millisecond, Time: at(time.Duration(10+i) * time.Second)})
	}
	if got := s.Snapshot().RTTEWMA; got < 50*time.Millisecond || got > 50*time.Millisecond+time.Microsecond {
		t.Fatalf("EWMA %v after 100 samples of 50ms", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := health.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if err := (health.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	cases := []struct {
		field string
		cfg   health.Config
	}{
		{"Interval", health.Config{Interval: -1}},
		{"Timeout", health.Config{Timeout: -time.Second}},
		{"IdleThreshold", health.Config{IdleThreshold: -1}},
		{"FailureThreshold", health.Config{FailureThreshold: -1}},
		{"MaxInFlight", health.Config{MaxInFlight: -16}},
		{"BatchSize", health.Config{BatchSize: -1}},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if !errors.Is(err, health.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field+" ") {
			t.Errorf("%s: %v", c.field, err)
		}
		_, err = health.NewMonitor(health.MonitorConfig{Config: c.cfg, Targets: seq(nil)})
		if !errors.Is(err, health.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field+" ") {
			t.Errorf("NewMonitor %s: %v", c.field, err)
		}
	}
	_, err := health.NewMonitor(health.MonitorConfig{})
	if !errors.Is(err, health.ErrInvalidConfig) || !strings.Contains(err.Error(), "Targets") {
		t.Errorf("NewMonitor without Targets: %v", err)
	}
	m, err := health.NewMonitor(health.MonitorConfig{Targets: seq(nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := health.DefaultConfig()
	want.IdleThreshold = want.Interval
	if got := m.Config(); got != want {
		t.Errorf("zero Config filled in as %+v, want %+v", got, want)
	}
}

func TestDetectionBound(t *testing.T) {
	s := time.Second
	cases := []struct {
		cfg  health.Config
		want time.Duration
	}{
		{health.Config{}, 55 * s},        // (10+5)*3 + 10
		{health.DefaultConfig(), 55 * s}, // the same
		{health.Config{FailureThreshold: 1}, 25 * s},
		{health.Config{Interval: 2 * s, Timeout: s, FailureThreshold: 5}, 17 * s},
		// Timeout > Interval: sweeps last Timeout; 1+5 + 2*5 + 5.
		{health.Config{Interval: s, Timeout: 5 * s, FailureThreshold: 3}, 21 * s},
		// IdleThreshold > Interval: the first probe waits for it, the
		// others come at every sweep; 30+10 + 2*10 + 1.
		{health.Config{Interval: 10 * s, Timeout: s, IdleThreshold: 30 * s}, 61 * s},
	}
	for _, c := range cases {
		if got := c.cfg.DetectionBound(); got != c.want {
			t.Errorf("%+v: %v, want %v", c.cfg, got, c.want)
		}
	}
}
