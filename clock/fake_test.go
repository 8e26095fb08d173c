package clock_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/clock"
)

var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// step is one action of a timer scenario.
type step struct {
	op    string // "timer", "func", "wait", "stop", "reset", "recv"
	timer int    // index of the timer, in creation order, for stop/reset/recv
	d     time.Duration
}

// runScenario performs steps on clk and returns what it observed. wait
// moves time on by d; settle lets whatever is due run before the next
// step.
func runScenario(clk clock.Clock, wait func(time.Duration), settle func(), steps []step) []string {
	start := clk.Now()
	var (
		mu  sync.Mutex
		log []string
	)
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, fmt.Sprintf(format, args...))
	}
	var timers []clock.Timer
	for _, s := range steps {
		switch s.op {
		case "timer":
			timers = append(timers, clk.NewTimer(s.d))
		case "func":
			i := len(timers)
			timers = append(timers, clk.AfterFunc(s.d, func() {
				logf("timer %d: func ran at %v", i, clk.Now().Sub(start))
			}))
		case "wait":
			wait(s.d)
		case "stop":
			logf("timer %d: Stop() = %v", s.timer, timers[s.timer].Stop())
		case "reset":
			logf("timer %d: Reset(%v) = %v", s.timer, s.d, timers[s.timer].Reset(s.d))
		case "recv":
			select {
			case v := <-timers[s.timer].C():
				logf("timer %d: received %v", s.timer, v.Sub(start))
			default:
				logf("timer %d: nothing to receive", s.timer)
			}
		default:
			panic("unknown op " + s.op)
		}
		settle()
	}
	mu.Lock()
	defer mu.Unlock()
	return log
}

const ms = time.Millisecond

var timerScenarios = []struct {
	name  string
	steps []step
}{
	{"stop pending", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 5 * ms}, {op: "stop"}, {op: "wait", d: 10 * ms}, {op: "recv"}, {op: "stop"}}},
	{"stop fired, unreceived", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "stop"}, {op: "recv"}}},
	{"stop fired, received", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "recv"}, {op: "stop"}}},
	{"reset pending", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 5 * ms}, {op: "reset", d: 10 * ms}, {op: "wait", d: 7 * ms}, {op: "recv"}, {op: "wait", d: 5 * ms}, {op: "recv"}}},
	{"reset fired, unreceived", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "reset", d: 10 * ms}, {op: "recv"}, {op: "wait", d: 12 * ms}, {op: "recv"}}},
	{"reset fired, received", []step{{op: "timer", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "recv"}, {op: "reset", d: 5 * ms}, {op: "wait", d: 6 * ms}, {op: "recv"}}},
	{"reset stopped", []step{{op: "timer", d: 10 * ms}, {op: "stop"}, {op: "reset", d: 3 * ms}, {op: "wait", d: 4 * ms}, {op: "recv"}}},
	{"zero and negative", []step{{op: "timer", d: 0}, {op: "recv"}, {op: "timer", d: -ms}, {op: "stop", timer: 1}, {op: "recv", timer: 1}, {op: "reset", timer: 1, d: 0}, {op: "recv", timer: 1}}},
	{"deadline order", []step{{op: "timer", d: 30 * ms}, {op: "timer", d: 10 * ms}, {op: "timer", d: 20 * ms}, {op: "wait", d: 35 * ms}, {op: "recv", timer: 0}, {op: "recv", timer: 1}, {op: "recv", timer: 2}}},
	{"func stop pending", []step{{op: "func", d: 10 * ms}, {op: "wait", d: 5 * ms}, {op: "stop"}, {op: "wait", d: 10 * ms}, {op: "stop"}}},
	{"func stop fired", []step{{op: "func", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "stop"}}},
	{"func reset pending", []step{{op: "func", d: 10 * ms}, {op: "wait", d: 5 * ms}, {op: "reset", d: 10 * ms}, {op: "wait", d: 20 * ms}}},
	{"func reset fired runs again", []step{{op: "func", d: 10 * ms}, {op: "wait", d: 15 * ms}, {op: "reset", d: 5 * ms}, {op: "wait", d: 10 * ms}}},
	{"func zero", []step{{op: "func", d: 0}, {op: "wait", d: ms}, {op: "stop"}}},
	{"func deadline order", []step{{op: "func", d: 30 * ms}, {op: "func", d: 10 * ms}, {op: "func", d: 20 * ms}, {op: "wait", d: 35 * ms}}},
}

// TestFakeMatchesTime runs each scenario against the time package, in a
// synctest bubble where its sleeps take no real time, and against a Fake,
// and requires the same observations.
func TestFakeMatchesTime(t *testing.T) {
	for _, sc := range timerScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var want []string
			synctest.Test(t, func(t *testing.T) {
				want = runScenario(clock.Real(), time.Sleep, synctest.Wait, sc.steps)
			})
			fake := clock.NewFake(epoch)
			// Advance(0) runs AfterFunc(0) functions, as the
			// runtime runs them at once in a goroutine.
			got := runScenario(fake, fake.Advance, func() { fake.Advance(0) }, sc.steps)
			if !slices.Equal(got, want) {
				t.Errorf("Fake:\n\t%s\ntime package:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}

func TestFakeFiresInDeadlineOrder(t *testing.T) {
	fake := clock.NewFake(epoch)
	var fired []string
	record := func(name string) func() {
		return func() { fired = append(fired, fmt.Sprintf("%s@%v", name, fake.Now().Sub(epoch))) }
	}
	fake.AfterFunc(30*time.Second, record("c"))
	fake.AfterFunc(10*time.Second, record("a"))
	fake.AfterFunc(20*time.Second, record("b1"))
	fake.AfterFunc(20*time.Second, record("b2")) // same deadline, armed later
	ch := fake.NewTimer(15 * time.Second)
	reset := fake.AfterFunc(time.Second, record("b0"))
	reset.Reset(20 * time.Second) // re-armed last: after b1 and b2

	fake.Advance(29 * time.Second)
	want := []string{"a@10s", "b1@20s", "b2@20s", "b0@20s"}
	if !slices.Equal(fired, want) {
		t.Errorf("fired %v, want %v", fired, want)
	}
	select {
	case v := <-ch.C():
		if got := v.Sub(epoch); got != 15*time.Second {
			t.Errorf("channel timer sent %v, want its deadline 15s", got)
		}
	default:
		t.Error("channel timer did not fire")
	}
	if got := fake.Now().Sub(epoch); got != 29*time.Second {
		t.Errorf("Now after Advance = %v, want 29s", got)
	}
	if n := fake.Timers(); n != 1 {
		t.Errorf("Timers() = %d, want 1 (c)", n)
	}
	fake.Advance(time.Second)
	if last := fired[len(fired)-1]; last != "c@30s" {
		t.Errorf("last fired %q, want c@30s", last)
	}
}

// A timer armed by a firing function fires in the same Advance if its
// deadline falls within it.
func TestFakeTimerArmedWhileFiring(t *testing.T) {
	fake := clock.NewFake(epoch)
	var fired []time.Duration
	var tick func()
	tick = func() {
		fired = append(fired, fake.Now().Sub(epoch))
		fake.AfterFunc(4*time.Second, tick)
	}
	fake.AfterFunc(4*time.Second, tick)
	fake.Advance(10 * time.Second)
	if want := []time.Duration{4 * time.Second, 8 * time.Second}; !slices.Equal(fired, want) {
		t.Errorf("fired at %v, want %v", fired, want)
	}
	if n := fake.Timers(); n != 1 {
		t.Errorf("Timers() = %d, want 1 (the tick due at 12s)", n)
	}
}

// AfterFunc with d <= 0 must not call f inside AfterFunc: a caller holding
// the lock f takes would deadlock.
func TestFakeAfterFuncZeroWaitsForAdvance(t *testing.T) {
	fake := clock.NewFake(epoch)
	var mu sync.Mutex
	ran := false
	mu.Lock()
	fake.AfterFunc(0, func() {
		mu.Lock()
		defer mu.Unlock()
		ran = true
	})
	mu.Unlock()
	if ran {
		t.Fatal("f ran inside AfterFunc")
	}
	if n := fake.Timers(); n != 1 {
		t.Errorf("Timers() = %d, want 1", n)
	}
	fake.Advance(0)
	if !ran {
		t.Error("f did not run at Advance(0)")
	}
}

func TestFakeSet(t *testing.T) {
	fake := clock.NewFake(epoch)
	timer := fake.NewTimer(10 * time.Second)

	fake.Set(epoch.Add(-5 * time.Second)) // back: nothing fires, the deadline stays
	if got := fake.Now(); !got.Equal(epoch.Add(-5 * time.Second)) {
		t.Fatalf("Now after Set back = %v", got)
	}
	fake.Advance(14 * time.Second)
	select {
	case <-timer.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	fake.Set(epoch.Add(10 * time.Second))
	select {
	case v := <-timer.C():
		if !v.Equal(epoch.Add(10 * time.Second)) {
			t.Errorf("timer sent %v, want its deadline", v)
		}
	default:
		t.Error("timer did not fire at Set forward")
	}
}

func TestFakeAdvanceNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Advance(-1) did not panic")
		}
	}()
	clock.NewFake(epoch).Advance(-1)
}

func TestFakeBlockUntil(t *testing.T) {
	fake := clock.NewFake(epoch)
	done := make(chan time.Time)
	go func() {
		timer := fake.NewTimer(time.Minute)
		done <- <-timer.C()
	}()
	if err := fake.BlockUntil(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	fake.Advance(time.Minute)
	if got := <-done; !got.Equal(epoch.Add(time.Minute)) {
		t.Errorf("goroutine's timer sent %v", got)
	}

	// Already satisfied: returns at once, whatever the context.
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := fake.BlockUntil(canceled, 0); err != nil {
		t.Errorf("BlockUntil(0) = %v, want nil", err)
	}
	if err := fake.BlockUntil(canceled, 1); err != context.Canceled {
		t.Errorf("BlockUntil with a canceled context = %v, want context.Canceled", err)
	}
}

// TestFakeBlockUntilMany waits for several goroutines to arm timers, then
// releases them all with one Advance.
func TestFakeBlockUntilMany(t *testing.T) {
	fake := clock.NewFake(epoch)
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-fake.NewTimer(time.Duration(i+1) * time.Second).C()
		})
	}
	if err := fake.BlockUntil(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	fake.Advance(n * time.Second)
	wg.Wait()
	if got := fake.Timers(); got != 0 {
		t.Errorf("Timers() = %d after all fired", got)
	}
}

// TestFakeConcurrentUse is for the race detector: timers armed, reset and
// stopped from several goroutines while the clock advances.
func TestFakeConcurrentUse(t *testing.T) {
	fake := clock.NewFake(epoch)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				d := time.Duration(g*i%7) * time.Millisecond
				timer := fake.NewTimer(d)
				fn := fake.AfterFunc(d, func() { _ = fake.Now() })
				timer.Reset(d + time.Millisecond)
				timer.Stop()
				fn.Reset(d)
			}
		})
	}
	for range 200 {
		fake.Advance(time.Millisecond)
	}
	wg.Wait()
	fake.Advance(time.Second)
	if n := fake.Timers(); n != 0 {
		t.Errorf("Timers() = %d after advancing past every deadline", n)
	}
}
