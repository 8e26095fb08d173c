package breaker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

// gobreaker starts no goroutines (it has no timers: open→half-open is
// computed when the state is next read), so there is no goleak check.

var (
	errDial  = errors.New("dial: connection refused")
	errGated = errors.New("gater: refused")
)

// shortTimeout is the OpenTimeout of tests that wait for half-open.
const shortTimeout = 50 * time.Millisecond

// waitLimit bounds every wait for an event; it is only reached on failure.
const waitLimit = 5 * time.Second

func testID(i int) peer.ID {
	var id peer.ID
	binary.LittleEndian.PutUint64(id[:8], uint64(i)+1) // first bytes pick the table shard
	id[31] = 0xab
	return id
}

func fail() error    { return errDial }
func succeed() error { return nil }

// recorder collects state changes. onChange runs inside the breaker, so it
// only does a non-blocking send; a full channel is a test failure.
type recorder struct {
	ch      chan breaker.StateChange
	dropped atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{ch: make(chan breaker.StateChange, 4096)}
}

func (r *recorder) onChange(c breaker.StateChange) {
	select {
	case r.ch <- c:
	default:
		r.dropped.Add(1)
	}
}

// next waits for the next change, which must be id's from→to.
func (r *recorder) next(t *testing.T, id peer.ID, from, to breaker.State) breaker.StateChange {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case c := <-r.ch:
		if c.Peer != id || c.From != from || c.To != to {
			t.Fatalf("state change = {%s %s→%s}, want {%s %s→%s}",
				c.Peer.ShortString(), c.From, c.To, id.ShortString(), from, to)
		}
		return c
	case <-timer.C:
		t.Fatalf("no state change %s→%s for %s within %v", from, to, id.ShortString(), waitLimit)
		panic("unreachable")
	}
}

// none checks that no change has been reported. onChange is synchronous,
// so every change caused by a call that has returned is already queued.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-r.ch:
		t.Fatalf("unexpected state change {%s %s→%s}", c.Peer.ShortString(), c.From, c.To)
	default:
	}
	if n := r.dropped.Load(); n > 0 {
		t.Fatalf("%d state changes dropped", n)
	}
}

func newRegistry(t testing.TB, s breaker.Settings) (*breaker.Registry, *recorder) {
	t.Helper()
	rec := newRecorder()
	r, err := breaker.NewRegistry(s, rec.onChange)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return r, rec
}

// waitState polls State until it is want: reading the state is what makes
// gobreaker notice that OpenTimeout has passed.
func waitState(t *testing.T, r *breaker.Registry, id peer.ID, want breaker.State) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if got := r.State(id); got == want {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("State(%s) = %s after %v, want %s", id.ShortString(), r.State(id), waitLimit, want)
		}
	}
}

// trip opens id's circuit with n failures and consumes the change.
func trip(t *testing.T, r *breaker.Registry, rec *recorder, id peer.ID, n int) breaker.StateChange {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := r.Execute(id, fail); !errors.Is(err, errDial) {
			t.Fatalf("failure %d: Execute = %v, want %v", i+1, err, errDial)
		}
	}
	if got := r.State(id); got != breaker.StateOpen {
		t.Fatalf("after %d failures State = %s, want open", n, got)
	}
	return rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
}

// halfOpen trips id's circuit (threshold 1) and waits for half-open.
func halfOpen(t *testing.T, r *breaker.Registry, rec *recorder, id peer.ID) {
	t.Helper()
	trip(t, r, rec, id, 1)
	waitState(t, r, id, breaker.StateHalfOpen)
	rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
}

func TestOpensOnExactlyNthFailure(t *testing.T) {
	for _, threshold := range []uint32{0, 1, 2, 3, 5, 7} {
		want := threshold
		if want == 0 {
			want = breaker.DefaultFailureThreshold
		}
		t.Run(fmt.Sprintf("threshold=%d", threshold), func(t *testing.T) {
			r, rec := newRegistry(t, breaker.Settings{FailureThreshold: threshold, OpenTimeout: time.Hour})
			id := testID(1)
			for i := uint32(1); i < want; i++ {
				if err := r.Execute(id, fail); !errors.Is(err, errDial) {
					t.Fatalf("failure %d: Execute = %v", i, err)
				}
				if got := r.State(id); got != breaker.StateClosed {
					t.Fatalf("after %d of %d failures State = %s, want closed", i, want, got)
				}
				if _, cf := r.Counts(id); cf != i {
					t.Fatalf("after %d failures consecutiveFailures = %d", i, cf)
				}
				rec.none(t)
			}
			// The Nth failure itself is returned (fn ran), and opens it.
			if err := r.Execute(id, fail); !errors.Is(err, errDial) || errors.Is(err, breaker.ErrOpen) {
				t.Fatalf("failure %d: Execute = %v, want %v", want, err, errDial)
			}
			if got := r.State(id); got != breaker.StateOpen {
				t.Fatalf("after %d failures State = %s, want open", want, got)
			}
			rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
		})
	}
}

func TestOpenFailsFastWithoutCallingFn(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 2, OpenTimeout: time.Hour})
	id := testID(1)
	opened := trip(t, r, rec, id, 2)
	reqs, cf := r.Counts(id)

	var calls atomic.Int32
	for i := 0; i < 10; i++ {
		err := r.Execute(id, func() error { calls.Add(1); return nil })
		if !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("Execute while open = %v, want ErrOpen", err)
		}
		var oe *breaker.OpenError
		if !errors.As(err, &oe) {
			t.Fatalf("Execute while open = %T, want *OpenError", err)
		}
		if oe.Peer != id || oe.State != breaker.StateOpen {
			t.Fatalf("OpenError = {%s %s}, want {%s open}", oe.Peer.ShortString(), oe.State, id.ShortString())
		}
		if want := opened.Time.Add(time.Hour); oe.Until.Sub(want).Abs() > time.Second {
			t.Fatalf("OpenError.Until = %v, want about %v", oe.Until, want)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "breaker: circuit open") || !strings.Contains(msg, id.ShortString()) || !strings.Contains(msg, "open until") {
			t.Fatalf("error message %q does not say open, the peer and until when", msg)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("fn called %d times while open", n)
	}
	if r2, cf2 := r.Counts(id); r2 != reqs || cf2 != cf {
		t.Fatalf("refusals changed Counts from (%d, %d) to (%d, %d)", reqs, cf, r2, cf2)
	}
	rec.none(t)
}

func TestHalfOpensAfterOpenTimeoutViaState(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: shortTimeout})
	id := testID(1)
	opened := trip(t, r, rec, id, 1)
	waitState(t, r, id, breaker.StateHalfOpen)
	c := rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
	if d := c.Time.Sub(opened.Time); d < shortTimeout {
		t.Fatalf("half-open %v after open, want at least OpenTimeout %v", d, shortTimeout)
	}
	// A successful trial closes it.
	if err := r.Execute(id, succeed); err != nil {
		t.Fatalf("trial Execute = %v", err)
	}
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("after successful trial State = %s, want closed", got)
	}
	if reqs, cf := r.Counts(id); reqs != 0 || cf != 0 {
		t.Fatalf("after closing Counts = (%d, %d), want (0, 0)", reqs, cf)
	}
	rec.none(t)
}

// The manager's own pattern: it does not poll State, it retries Execute;
// the first Execute after OpenTimeout makes the circuit half-open and is
// the trial.
func TestHalfOpensAfterOpenTimeoutViaExecute(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: shortTimeout})
	id := testID(1)
	opened := trip(t, r, rec, id, 1)

	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var trialAt time.Time
	for trialAt.IsZero() {
		err := r.Execute(id, func() error { trialAt = time.Now(); return nil })
		switch {
		case err == nil:
		case errors.Is(err, breaker.ErrOpen):
			select {
			case <-tick.C:
			case <-deadline.C:
				t.Fatalf("still refused %v after opening", waitLimit)
			}
		default:
			t.Fatalf("Execute = %v", err)
		}
	}
	if d := trialAt.Sub(opened.Time); d < shortTimeout {
		t.Fatalf("trial let through %v after open, want at least %v", d, shortTimeout)
	}
	rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
	rec.none(t)
}

func TestFailedTrialReopens(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 3, OpenTimeout: shortTimeout})
	id := testID(1)
	trip(t, r, rec, id, 3)
	waitState(t, r, id, breaker.StateHalfOpen)
	rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)

	// One failed trial re-opens it: no FailureThreshold in half-open.
	if err := r.Execute(id, fail); !errors.Is(err, errDial) {
		t.Fatalf("trial Execute = %v, want %v", err, errDial)
	}
	reopened := rec.next(t, id, breaker.StateHalfOpen, breaker.StateOpen)
	var calls atomic.Int32
	err := r.Execute(id, func() error { calls.Add(1); return nil })
	// Refused, unless this machine took a whole OpenTimeout to get here.
	if time.Since(reopened.Time) < shortTimeout-5*time.Millisecond {
		if !errors.Is(err, breaker.ErrOpen) || calls.Load() != 0 {
			t.Fatalf("Execute right after re-opening = %v (fn called %d times), want ErrOpen", err, calls.Load())
		}
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.Until.Sub(reopened.Time.Add(shortTimeout)).Abs() > 5*time.Millisecond {
			t.Fatalf("OpenError after re-opening = %#v, want Until about %v", oe, reopened.Time.Add(shortTimeout))
		}
		// The new open period ends in half-open again.
		waitState(t, r, id, breaker.StateHalfOpen)
		rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
	}
}

func TestHalfOpenRefusesWhileTrialInFlight(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: shortTimeout})
	id := testID(1)
	halfOpen(t, r, rec, id)

	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Execute(id, func() error { close(started); <-release; return nil })
	}()
	<-started

	var calls atomic.Int32
	err := r.Execute(id, func() error { calls.Add(1); return nil })
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("second Execute while half-open = %v, want *OpenError wrapping ErrOpen", err)
	}
	if oe.State != breaker.StateHalfOpen || !oe.Until.IsZero() || calls.Load() != 0 {
		t.Fatalf("OpenError = {State %s, Until %v}, fn called %d times; want half-open, zero Until, 0 calls",
			oe.State, oe.Until, calls.Load())
	}
	if msg := err.Error(); !strings.Contains(msg, "half-open") {
		t.Fatalf("error message %q does not say half-open", msg)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatalf("trial Execute = %v", err)
	}
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
}

// With HalfOpenMaxRequests n, gobreaker lets n trials through in total
// and closes only when all n have succeeded.
func TestHalfOpenMaxRequests(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: shortTimeout, HalfOpenMaxRequests: 2})
	id := testID(1)
	halfOpen(t, r, rec, id)
	if err := r.Execute(id, succeed); err != nil {
		t.Fatalf("trial 1 = %v", err)
	}
	if got := r.State(id); got != breaker.StateHalfOpen {
		t.Fatalf("after 1 of 2 successful trials State = %s, want half-open", got)
	}
	rec.none(t)
	if err := r.Execute(id, succeed); err != nil {
		t.Fatalf("trial 2 = %v", err)
	}
	rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
}

func TestExcludedErrorsDoNotCount(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		isExcluded func(error) bool
		err        error
	}{
		{"context.Canceled", nil, context.Canceled},
		{"ctx.Err wrapped", nil, fmt.Errorf("dial 10.0.0.1:4001: %w", ctx.Err())},
		{"context.Canceled with custom IsExcluded", func(err error) bool { return errors.Is(err, errGated) }, context.Canceled},
		{"custom IsExcluded", func(err error) bool { return errors.Is(err, errGated) }, fmt.Errorf("dial: %w", errGated)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nilSeen atomic.Bool
			isExcluded := tt.isExcluded
			if isExcluded != nil {
				inner := isExcluded
				isExcluded = func(err error) bool {
					if err == nil {
						nilSeen.Store(true)
					}
					return inner(err)
				}
			}
			s := breaker.Settings{FailureThreshold: 3, OpenTimeout: shortTimeout, IsExcluded: isExcluded}
			r, rec := newRegistry(t, s)
			id := testID(1)
			excluded := func() error { return tt.err }

			// Closed: excluded errors neither trip the circuit nor reset
			// the run of failures.
			for i := 0; i < 2; i++ {
				r.Execute(id, fail)
			}
			for i := 0; i < 10; i++ {
				if err := r.Execute(id, excluded); err != tt.err {
					t.Fatalf("Execute = %v, want %v unchanged", err, tt.err)
				}
			}
			if got := r.State(id); got != breaker.StateClosed {
				t.Fatalf("after 2 failures and 10 excluded State = %s, want closed", got)
			}
			if reqs, cf := r.Counts(id); reqs != 2 || cf != 2 {
				t.Fatalf("Counts = (%d, %d), want (2, 2): excluded dials not counted", reqs, cf)
			}
			rec.none(t)
			r.Execute(id, fail) // the 3rd failure in a row, despite the exclusions between
			rec.next(t, id, breaker.StateClosed, breaker.StateOpen)

			// Half-open: an excluded trial neither closes nor re-opens
			// the circuit, and gives its slot back.
			waitState(t, r, id, breaker.StateHalfOpen)
			rec.next(t, id, breaker.StateOpen, breaker.StateHalfOpen)
			for i := 0; i < 3; i++ {
				if err := r.Execute(id, excluded); err != tt.err {
					t.Fatalf("excluded trial = %v, want %v", err, tt.err)
				}
				if got := r.State(id); got != breaker.StateHalfOpen {
					t.Fatalf("after excluded trial State = %s, want half-open", got)
				}
			}
			rec.none(t)
			if err := r.Execute(id, succeed); err != nil {
				t.Fatalf("trial after excluded ones = %v, want nil (slot given back)", err)
			}
			rec.next(t, id, breaker.StateHalfOpen, breaker.StateClosed)
			if nilSeen.Load() {
				t.Error("IsExcluded was called with a nil error")
			}
		})
	}
}

func TestDeadlineExceededCounts(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 2, OpenTimeout: time.Hour})
	id := testID(1)
	for i := 0; i < 2; i++ {
		r.Execute(id, func() error { return fmt.Errorf("dial: %w", context.DeadlineExceeded) })
	}
	rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
}

func TestSuccessResetsConsecutiveFailures(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{OpenTimeout: time.Hour}) // threshold 5
	id := testID(1)
	for i := 0; i < 4; i++ {
		r.Execute(id, fail)
	}
	if err := r.Execute(id, succeed); err != nil {
		t.Fatalf("Execute(succeed) = %v", err)
	}
	if reqs, cf := r.Counts(id); reqs != 5 || cf != 0 {
		t.Fatalf("after 4 failures and a success Counts = (%d, %d), want (5, 0)", reqs, cf)
	}
	for i := 0; i < 4; i++ {
		r.Execute(id, fail)
	}
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("8 failures split by a success: State = %s, want closed", got)
	}
	if _, cf := r.Counts(id); cf != 4 {
		t.Fatalf("consecutiveFailures = %d, want 4", cf)
	}
	rec.none(t)
	r.Execute(id, fail)
	rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
}

func TestIntervalResetsCounts(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 3, OpenTimeout: time.Hour, Interval: shortTimeout})
	id := testID(1)
	start := time.Now()
	r.Execute(id, fail)
	r.Execute(id, fail)
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		reqs, cf := r.Counts(id)
		if reqs == 0 && cf == 0 {
			break
		}
		if time.Since(start) < shortTimeout-5*time.Millisecond && cf != 2 {
			t.Fatalf("consecutiveFailures = %d before the window ended, want 2", cf)
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("Counts = (%d, %d) %v after Interval %v, want reset", reqs, cf, waitLimit, shortTimeout)
		}
	}
	r.Execute(id, fail)
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("1 failure after the reset: State = %s, want closed", got)
	}
	rec.none(t)
}

func TestIndependentPeers(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	a, b, c := testID(1), testID(2), testID(3)
	trip(t, r, rec, a, 1)

	called := false
	if err := r.Execute(b, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Execute(b) = %v, called %v; want nil, true", err, called)
	}
	if got := r.State(b); got != breaker.StateClosed {
		t.Fatalf("State(b) = %s, want closed", got)
	}
	if got := r.State(a); got != breaker.StateOpen {
		t.Fatalf("State(a) = %s, want open", got)
	}
	// Unknown peers are closed, and reading them creates nothing.
	if got := r.State(c); got != breaker.StateClosed {
		t.Fatalf("State(unknown) = %s, want closed", got)
	}
	if reqs, cf := r.Counts(c); reqs != 0 || cf != 0 {
		t.Fatalf("Counts(unknown) = (%d, %d)", reqs, cf)
	}
	if n := r.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	rec.none(t)
}

func TestOnChangeFields(t *testing.T) {
	var got []breaker.StateChange
	var mu sync.Mutex
	r, err := breaker.NewRegistry(breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour}, func(c breaker.StateChange) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	id := testID(42)
	before := time.Now()
	r.Execute(id, fail)
	after := time.Now()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("got %d changes, want 1", len(got))
	}
	c := got[0]
	if c.Peer != id || c.From != breaker.StateClosed || c.To != breaker.StateOpen {
		t.Fatalf("change = {%s %s→%s}, want {%s closed→open}", c.Peer.ShortString(), c.From, c.To, id.ShortString())
	}
	if c.Time.Before(before) || c.Time.After(after) {
		t.Fatalf("change Time %v not within the Execute call [%v, %v]", c.Time, before, after)
	}
}

func TestNilOnChange(t *testing.T) {
	r, err := breaker.NewRegistry(breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := testID(1)
	r.Execute(id, fail)
	var oe *breaker.OpenError
	if err := r.Execute(id, succeed); !errors.As(err, &oe) || oe.Until.IsZero() {
		t.Fatalf("Execute while open = %v, want *OpenError with Until", err)
	}
}

type dialError struct{ addr string }

func (e *dialError) Error() string { return "dial " + e.addr + ": no route to host" }

func TestFnErrorsReturnedUnchanged(t *testing.T) {
	r, _ := newRegistry(t, breaker.Settings{})
	id := testID(1)
	want := &dialError{"10.0.0.1:4001"}
	err := r.Execute(id, func() error { return want })
	if err != want {
		t.Fatalf("Execute = %#v, want the same *dialError", err)
	}
	var de *dialError
	if !errors.As(err, &de) || errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("errors.As(*dialError) failed or ErrOpen matched for %v", err)
	}
	// Even an error that looks like a refusal is fn's, if fn returned it.
	if err := r.Execute(id, func() error { return breaker.ErrOpen }); err != breaker.ErrOpen {
		t.Fatalf("Execute = %#v, want ErrOpen itself, as fn returned it", err)
	}
}

func TestPanicCountsAsFailure(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	id := testID(1)
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the panic to go on up", p)
			}
		}()
		r.Execute(id, func() error { panic("boom") })
	}()
	rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
}

// gobreaker drops the outcome of a call begun in an earlier state: a slow
// dial that started while closed and succeeds after the circuit opened
// does not close it.
func TestOutcomeFromEarlierStateIsDropped(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	id := testID(1)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Execute(id, func() error { close(started); <-release; return nil })
	}()
	<-started
	r.Execute(id, fail)
	rec.next(t, id, breaker.StateClosed, breaker.StateOpen)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("slow Execute = %v", err)
	}
	if got := r.State(id); got != breaker.StateOpen {
		t.Fatalf("State = %s, want still open", got)
	}
	rec.none(t)
}

func TestRemove(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	a, b := testID(1), testID(2)
	r.Remove(a) // unknown: no-op
	trip(t, r, rec, a, 1)
	r.Execute(b, succeed)
	if n := r.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	r.Remove(a)
	if n := r.Len(); n != 1 {
		t.Fatalf("Len after Remove = %d, want 1", n)
	}
	if got := r.State(a); got != breaker.StateClosed {
		t.Fatalf("State after Remove = %s, want closed", got)
	}
	called := false
	if err := r.Execute(a, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Execute after Remove = %v, called %v; want a fresh closed circuit", err, called)
	}
	rec.none(t)
}

func TestRemoveSilencesCallsInFlight(t *testing.T) {
	r, rec := newRegistry(t, breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	id := testID(1)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Execute(id, func() error { close(started); <-release; return errDial })
	}()
	<-started
	r.Remove(id)
	close(release)
	<-done // the old circuit opens, unreported
	rec.none(t)
	if got := r.State(id); got != breaker.StateClosed {
		t.Fatalf("State = %s, want closed: the failure belonged to the removed circuit", got)
	}
}

func TestConcurrentPeers(t *testing.T) {
	const (
		peers      = 200 // even ones always fail, odd ones always succeed
		removable  = 20  // extra peers, removed and recreated throughout
		goroutines = 32
		rounds     = 400
	)
	var opens [peers + removable]atomic.Int32
	var bad atomic.Value
	index := make(map[peer.ID]int)
	for i := 0; i < peers+removable; i++ {
		index[testID(i)] = i
	}
	r, err := breaker.NewRegistry(breaker.Settings{FailureThreshold: 3, OpenTimeout: time.Hour}, func(c breaker.StateChange) {
		i, ok := index[c.Peer]
		switch {
		case !ok:
			bad.Store(fmt.Sprintf("change for unknown peer %s", c.Peer.ShortString()))
		case c.From != breaker.StateClosed || c.To != breaker.StateOpen:
			bad.Store(fmt.Sprintf("change %s→%s; only closed→open can happen", c.From, c.To))
		default:
			opens[i].Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Go(func() {
			for i := 0; i < rounds; i++ {
				p := (g*7919 + i*31) % peers
				id := testID(p)
				fn := succeed
				switch {
				case i%10 == 0:
					fn = func() error { return context.Canceled }
				case p%2 == 0:
					fn = fail
				}
				err := r.Execute(id, fn)
				if err != nil && !errors.Is(err, errDial) && !errors.Is(err, breaker.ErrOpen) && !errors.Is(err, context.Canceled) {
					bad.Store(fmt.Sprintf("Execute = %v", err))
				}
				r.State(id)
				r.Counts(testID((p + 1) % peers))
				extra := testID(peers + i%removable)
				if g%4 == 0 {
					r.Remove(extra)
				} else {
					r.Execute(extra, fail)
				}
				r.Len()
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	for p := 0; p < peers; p++ {
		id := testID(p)
		want, wantOpens := breaker.StateClosed, int32(0)
		if p%2 == 0 {
			want, wantOpens = breaker.StateOpen, 1
		}
		if got := r.State(id); got != want {
			t.Errorf("peer %d: State = %s, want %s", p, got, want)
		}
		if n := opens[p].Load(); n != wantOpens {
			t.Errorf("peer %d: %d closed→open changes, want %d", p, n, wantOpens)
		}
	}
	if n := r.Len(); n < peers || n > peers+removable {
		t.Errorf("Len = %d, want between %d and %d", n, peers, peers+removable)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    breaker.Settings
		want string // substring of the error; "" for valid
	}{
		{"zero", breaker.Settings{}, ""},
		{"defaults", breaker.DefaultSettings(), ""},
		{"negative Interval means never reset", breaker.Settings{Interval: -1}, ""},
		{"negative OpenTimeout", breaker.Settings{OpenTimeout: -time.Second}, "OpenTimeout is -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			r, nerr := breaker.NewRegistry(tt.s, nil)
			if tt.want == "" {
				if err != nil || nerr != nil || r == nil {
					t.Fatalf("Validate = %v, NewRegistry = %v, want both nil", err, nerr)
				}
				return
			}
			for _, e := range []error{err, nerr} {
				if !errors.Is(e, breaker.ErrInvalidSettings) || !strings.Contains(e.Error(), tt.want) ||
					!strings.HasPrefix(e.Error(), "breaker: invalid settings") {
					t.Fatalf("error = %v, want one wrapping ErrInvalidSettings saying %q", e, tt.want)
				}
			}
			if r != nil {
				t.Fatal("NewRegistry returned a registry with its error")
			}
		})
	}
}

func TestDefaultSettings(t *testing.T) {
	s := breaker.DefaultSettings()
	if s.FailureThreshold != 5 || s.OpenTimeout != 30*time.Second || s.HalfOpenMaxRequests != 1 ||
		s.Interval != 60*time.Second || s.IsExcluded != nil {
		t.Fatalf("DefaultSettings = %+v", s)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[breaker.State]string{
		breaker.StateClosed:   "closed",
		breaker.StateHalfOpen: "half-open",
		breaker.StateOpen:     "open",
		7:                     "State(7)",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
}
