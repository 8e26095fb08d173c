package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
)

// The open state and the closed-state window follow Settings.Clock, not
// the real clock: a simulation's fake time drives them, however little
// real time passes.

func TestOpenTimeoutFollowsTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 2, OpenTimeout: 30 * time.Second, Clock: clk})
	id := testID(1)
	opened := clk.Now()
	c := trip(t, r, rec, id, 2)
	if !c.Time.Equal(opened) {
		t.Errorf("StateChange.Time = %v, want the clock's %v", c.Time, opened)
	}

	clk.Advance(30*time.Second - time.Nanosecond)
	called := false
	err := r.Execute(id, func() error { called = true; return nil })
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || called {
		t.Fatalf("1 ns before OpenTimeout: Execute = %v (fn called: %v), want an *OpenError", err, called)
	}
	if want := opened.Add(30 * time.Second); oe.State != breaker.StateOpen || !oe.Until.Equal(want) {
		t.Fatalf("OpenError = %+v, want open until %v", oe, want)
	}
	if got := r.State(id); got != breaker.StateOpen {
		t.Fatalf("State = %s 1 ns before OpenTimeout, want open", got)
	}
	rec.none(t)

	clk.Advance(time.Nanosecond)
	if got := r.State(id); got != breaker.StateHalfOpen {
		t.Fatalf("State = %s at OpenTimeout on the clock, want half-open", got)
	}
	rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
	if err := r.Execute(id, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("trial: Execute = %v (fn called: %v), want the trial let through", err, called)
	}
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
}

func TestFailedTrialReopensForOpenTimeoutOnTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Minute, Clock: clk})
	id := testID(1)
	trip(t, r, rec, id, 1)
	clk.Advance(time.Minute)
	if err := r.Execute(id, fail); !errors.Is(err, errDial) {
		t.Fatalf("trial: Execute = %v, want %v", err, errDial)
	}
	rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateOpen)
	clk.Advance(time.Minute - time.Millisecond)
	if err := r.Execute(id, succeed); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("before the second OpenTimeout: Execute = %v, want ErrOpen", err)
	}
	clk.Advance(time.Millisecond)
	if err := r.Execute(id, succeed); err != nil {
		t.Fatalf("after the second OpenTimeout: Execute = %v, want the trial through", err)
	}
}

func TestIntervalFollowsTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 3, OpenTimeout: time.Hour, Interval: time.Minute, Clock: clk})
	id := testID(1)
	r.Execute(id, fail)
	r.Execute(id, fail)
	clk.Advance(time.Minute - time.Nanosecond)
	if reqs, cf := r.Counts(id); reqs != 2 || cf != 2 {
		t.Fatalf("before the window ends: Counts = (%d, %d), want (2, 2)", reqs, cf)
	}
	clk.Advance(time.Nanosecond)
	if reqs, cf := r.Counts(id); reqs != 0 || cf != 0 {
		t.Fatalf("when the window ends: Counts = (%d, %d), want (0, 0)", reqs, cf)
	}
	r.Execute(id, fail)
	r.Execute(id, fail)
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("2 failures in the new window: State = %s, want closed", got)
	}
	rec.none(t)
	r.Execute(id, fail)
	rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
}

// A dial let through in one window whose outcome arrives in the next is
// not counted there, as gobreaker drops outcomes of an earlier state.
func TestOutcomeFromEarlierWindowIsDropped(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour, Interval: time.Minute, Clock: clk})
	id := testID(1)
	err := r.Execute(id, func() error {
		clk.Advance(time.Minute)
		return errDial
	})
	if !errors.Is(err, errDial) {
		t.Fatalf("Execute = %v, want %v", err, errDial)
	}
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("State = %s, want closed: the failure belonged to the last window", got)
	}
	rec.none(t)
}
