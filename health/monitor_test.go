package health_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/health"
)

// All tests here run in a synctest bubble: intervals, timeouts and the
// fakes' round trips pass in virtual time, so the times asserted are
// exact, and nothing ever sleeps to wait for an event.

func TestCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		cfg := health.Config{Timeout: 2 * time.Second}

		live := newFake(1, answers(30*time.Millisecond))
		r := health.Check(context.Background(), live, cfg)
		if !r.Healthy || r.Err != nil || r.RTT != 30*time.Millisecond || r.Peer != live.id || !r.Time.Equal(start) || r.Skipped {
			t.Fatalf("live: %+v", r)
		}

		dead := newFake(2, silent)
		start = time.Now()
		r = health.Check(context.Background(), dead, cfg)
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("silent peer: Check took %v, want the 2s timeout", took)
		}
		if r.Healthy || !errors.Is(r.Err, context.DeadlineExceeded) || r.RTT != 0 || !r.Time.Equal(start) {
			t.Fatalf("silent: %+v", r)
		}

		r = health.Check(context.Background(), newFake(3, refuses), cfg)
		if r.Healthy || !errors.Is(r.Err, errRefused) {
			t.Fatalf("refusing: %+v", r)
		}

		// Zero Config: DefaultTimeout.
		start = time.Now()
		health.Check(context.Background(), dead, health.Config{})
		if took := time.Since(start); took != health.DefaultTimeout {
			t.Errorf("zero Config: Check took %v, want %v", took, health.DefaultTimeout)
		}

		// An ended ctx: no probe.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		calls := live.calls.Load()
		if r := health.Check(ctx, live, cfg); r.Healthy || !errors.Is(r.Err, context.Canceled) || live.calls.Load() != calls {
			t.Fatalf("cancelled ctx: %+v, %d pings", r, live.calls.Load()-calls)
		}
	})
}

// TestMaxInFlight: 1,000 links that all need a probe, each taking 10ms:
// never more than MaxInFlight probes at once, all of them probed, in
// ceil(1000/16) rounds of 10ms.
func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, maxInFlight = 1000, 16
		rtt := 10 * time.Millisecond
		var g gauge
		links := make([]link, n)
		targets := make([]health.Target, n)
		for i := range links {
			f := newFake(i, answers(rtt))
			f.inFlight = &g
			links[i] = link{f, health.NewState(time.Now().Add(-time.Hour))}
			targets[i] = f
		}
		var ev events
		m, err := health.NewMonitor(health.MonitorConfig{
			Config:   health.Config{MaxInFlight: maxInFlight},
			Targets:  seq(links),
			OnResult: ev.onResult,
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		checked, unhealthy := m.Sweep(context.Background())
		if checked != n || unhealthy != 0 || ev.numResults() != n {
			t.Fatalf("Sweep: checked %d unhealthy %d results %d, want %d 0 %d", checked, unhealthy, ev.numResults(), n, n)
		}
		if p := g.peak.Load(); p != maxInFlight {
			t.Errorf("Sweep: peak %d probes in flight, want %d", p, maxInFlight)
		}
		if took, want := time.Since(start), (n+maxInFlight-1)/maxInFlight*rtt; took != want {
			t.Errorf("Sweep took %v, want %v", took, want)
		}
		for _, l := range links {
			if l.t.calls.Load() != 1 {
				t.Fatalf("%v probed %d times", l.t.id.ShortString(), l.t.calls.Load())
			}
		}

		// CheckAll: the same bound, results in input order.
		g.peak.Store(0)
		start = time.Now()
		results := health.CheckAll(context.Background(), targets, health.Config{MaxInFlight: maxInFlight})
		if p := g.peak.Load(); p != maxInFlight {
			t.Errorf("CheckAll: peak %d probes in flight, want %d", p, maxInFlight)
		}
		if took, want := time.Since(start), (n+maxInFlight-1)/maxInFlight*rtt; took != want {
			t.Errorf("CheckAll took %v, want %v", took, want)
		}
		for i, r := range results {
			if r.Peer != targets[i].Peer() || !r.Healthy || r.RTT != rtt {
				t.Fatalf("CheckAll result %d: %+v", i, r)
			}
		}

		// Two sweeps at once share the MaxInFlight slots.
		g.peak.Store(0)
		for i := range links {
			links[i].st = health.NewState(time.Now().Add(-time.Hour))
		}
		var wg sync.WaitGroup
		wg.Go(func() { m.Sweep(context.Background()) })
		wg.Go(func() { m.Sweep(context.Background()) })
		wg.Wait()
		if p := g.peak.Load(); p > maxInFlight {
			t.Errorf("two sweeps: peak %d probes in flight, over %d", p, maxInFlight)
		}
	})
}

// TestSilentDeclaredDead runs a Monitor over a live link and a silent
// one, both last active when the monitor starts: the silent one is
// declared dead at exactly 35s (probes sent at 10, 20 and 30s, each
// failing after the 5s timeout), within DetectionBound; the live one
// never is.
func TestSilentDeclaredDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		cfg := health.DefaultConfig()
		live := newFake(1, answers(20*time.Millisecond))
		mute := newFake(2, silent)
		live.setActivity(start)
		mute.setActivity(start)
		links := []link{{live, health.NewState(start)}, {mute, health.NewState(start)}}

		var sweeps []time.Duration // when each sweep started
		var ev events
		m, err := health.NewMonitor(health.MonitorConfig{
			Config: cfg,
			Targets: func(yield func(health.Target, *health.State) bool) {
				sweeps = append(sweeps, time.Since(start))
				seq(links)(yield)
			},
			OnResult: ev.onResult,
			OnDead:   ev.onDead,
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(m)

		time.Sleep(10 * time.Minute)
		stop()

		d := ev.deaths()
		if len(d) != 1 || d[0].peer != mute.id {
			t.Fatalf("deaths: %+v, want the silent link only", d)
		}
		if got := d[0].at.Sub(start); got != 35*time.Second {
			t.Errorf("silent link declared dead after %v, want 35s", got)
		}
		if got, bound := d[0].at.Sub(start), cfg.DetectionBound(); got > bound {
			t.Errorf("declared dead after %v, over DetectionBound %v", got, bound)
		}
		if r := d[0].r; r.Healthy || !errors.Is(r.Err, context.DeadlineExceeded) || r.Time.Sub(start) != 30*time.Second {
			t.Errorf("fatal result %+v", r)
		}
		if st := links[1].st.Snapshot(); !st.Dead || st.Failures != 3 || st.Samples != 0 {
			t.Errorf("silent link stats %+v", st)
		}
		if st := links[0].st.Snapshot(); st.Dead || st.Failures != 0 || st.Samples == 0 || st.RTTEWMA != 20*time.Millisecond {
			t.Errorf("live link stats %+v", st)
		}
		if n := mute.calls.Load(); n != 3 {
			t.Errorf("the dead link was probed %d times, want 3 (none after it was declared dead)", n)
		}
		// Sweeps start every Interval, from start to start, even when one
		// waits 5s for a probe.
		for i, s := range sweeps {
			if s != time.Duration(i)*cfg.Interval {
				t.Fatalf("sweep %d started at %v, want %v (all: %v)", i, s, time.Duration(i)*cfg.Interval, sweeps)
			}
		}
		if len(sweeps) != 61 {
			t.Errorf("%d sweeps in 10 minutes, want 61", len(sweeps))
		}
	})
}

// TestDetectionWithinBound: for several configurations, and for a link
// whose last byte arrives at various moments relative to the sweeps
// (right after one is the worst case), while another silent link makes
// every sweep last as long as a probe, the silent link is declared dead
// within DetectionBound of its last byte.
func TestDetectionWithinBound(t *testing.T) {
	s := time.Second
	configs := []health.Config{
		health.DefaultConfig(),
		{Interval: s, Timeout: 5 * s, FailureThreshold: 3},
		{Interval: 10 * s, Timeout: s, IdleThreshold: 30 * s},
		{Interval: 10 * s, Timeout: 3 * s, IdleThreshold: 4 * s, FailureThreshold: 1},
	}
	for _, cfg := range configs {
		for _, lastByte := range []time.Duration{0, time.Nanosecond, cfg.Interval / 2, cfg.Interval - 1, cfg.Interval} {
			t.Run(fmt.Sprintf("%v/%v/%v/%d/last=%v", cfg.Interval, cfg.Timeout, cfg.IdleThreshold, cfg.FailureThreshold, lastByte), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					start := time.Now()
					mute := newFake(1, silent)
					mute.setActivity(start.Add(lastByte))
					// Busy links fail every probe, so that every sweep
					// lasts Timeout; when one is declared dead, another
					// (a new link, silent too) takes its place.
					busy := newFake(2, silent)
					links := []link{{busy, health.NewState(start.Add(-time.Hour))}, {mute, health.NewState(start)}}
					var ev events
					m, err := health.NewMonitor(health.MonitorConfig{
						Config: cfg,
						Targets: func(yield func(health.Target, *health.State) bool) {
							if links[0].st.Snapshot().Dead {
								links[0].st = health.NewState(time.Now().Add(-time.Hour))
							}
							seq(links)(yield)
						},
						OnDead: ev.onDead,
					})
					if err != nil {
						t.Fatal(err)
					}
					stop := run(m)
					bound := cfg.DetectionBound()
					time.Sleep(lastByte + bound + time.Nanosecond)
					stop()
					var got time.Duration = -1
					for _, d := range ev.deaths() {
						if d.peer == mute.id {
							got = d.at.Sub(start.Add(lastByte))
						}
					}
					if got < 0 {
						t.Fatalf("not declared dead within DetectionBound %v of its last byte", bound)
					}
					t.Logf("declared dead %v after its last byte (bound %v)", got, bound)
				})
			})
		}
	}
}

// TestRunStopsOnCancel: cancelling Run while a probe waits for an answer
// returns at once (in virtual time: no time passes), the cut-short probe
// is neither recorded nor reported, and nothing is left running.
func TestRunStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		mute := newFake(1, silent)
		st := health.NewState(start.Add(-time.Hour))
		var ev events
		m, err := health.NewMonitor(health.MonitorConfig{
			Targets:  seq([]link{{mute, st}}),
			OnResult: ev.onResult,
			OnDead:   ev.onDead,
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(m)
		time.Sleep(2 * time.Second) // the first probe is in flight (Timeout 5s)
		synctest.Wait()
		if mute.calls.Load() != 1 {
			t.Fatalf("%d probes after 2s, want 1", mute.calls.Load())
		}
		stopAt := time.Now()
		stop()
		if took := time.Since(stopAt); took != 0 {
			t.Errorf("Run returned %v after cancel, want at once", took)
		}
		if s := st.Snapshot(); s.Failures != 0 || ev.numResults() != 0 {
			t.Errorf("a probe cut short by cancel was counted: %+v, %d results", s, ev.numResults())
		}

		// Cancelled between sweeps: also at once.
		m2, _ := health.NewMonitor(health.MonitorConfig{Targets: seq(nil)})
		stop = run(m2)
		time.Sleep(3 * time.Second)
		stopAt = time.Now()
		stop()
		if took := time.Since(stopAt); took != 0 {
			t.Errorf("idle Run returned %v after cancel, want at once", took)
		}
	})
}

// TestSweepSkipsActive: a link with recent activity is not probed; an
// error recorded on it forces a probe; activity after failed probes ends
// their run.
func TestSweepSkipsActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f := newFake(1, refuses)
		st := health.NewState(start)
		var ev events
		m, err := health.NewMonitor(health.MonitorConfig{
			Config:   health.Config{FailureThreshold: 3},
			Targets:  seq([]link{{f, st}}),
			OnResult: ev.onResult,
			OnDead:   ev.onDead,
		})
		if err != nil {
			t.Fatal(err)
		}
		sweep := func() (int, int) { return m.Sweep(context.Background()) }

		f.setActivity(start)
		time.Sleep(5 * time.Second)
		if c, _ := sweep(); c != 0 {
			t.Fatalf("probed a link active 5s ago")
		}
		st.RecordError()
		if c, u := sweep(); c != 1 || u != 1 {
			t.Fatalf("with an error recorded: checked %d unhealthy %d, want 1 1", c, u)
		}
		time.Sleep(10 * time.Second)
		if c, u := sweep(); c != 1 || u != 1 { // second failure in a row
			t.Fatalf("after 10s idle: checked %d unhealthy %d, want 1 1", c, u)
		}
		// Bytes arrive: the link is alive after all.
		time.Sleep(500 * time.Millisecond)
		f.setActivity(time.Now())
		time.Sleep(500 * time.Millisecond)
		if c, _ := sweep(); c != 0 {
			t.Fatal("probed a link active 0.5s ago")
		}
		if s := st.Snapshot(); s.ConsecutiveFailures != 0 || s.Failures != 2 {
			t.Fatalf("after activity: %+v, want the run of failures ended", s)
		}
		// Two more failures are not fatal; a third is.
		for i := 1; i <= 3; i++ {
			time.Sleep(10 * time.Second)
			sweep()
			if n := len(ev.deaths()); n != map[bool]int{true: 1, false: 0}[i == 3] {
				t.Fatalf("after %d failures since the activity: %d deaths", i, n)
			}
		}
		if ev.numResults() != 5 {
			t.Errorf("%d results, want 5 (one per probe)", ev.numResults())
		}
	})
}

// TestSweepBatches: a sweep looks at every link, in batches.
func TestSweepBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		links := make([]link, n)
		for i := range links {
			links[i] = link{newFake(i, answers(time.Millisecond)), health.NewState(time.Now())}
			if i%7 == 0 {
				links[i].st = health.NewState(time.Now().Add(-time.Hour))
			}
		}
		m, err := health.NewMonitor(health.MonitorConfig{Config: health.Config{BatchSize: 10}, Targets: seq(links)})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := m.Sweep(context.Background()); c != (n+6)/7 {
			t.Fatalf("checked %d, want %d", c, (n+6)/7)
		}
		// A cancelled sweep stops examining links.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if c, _ := m.Sweep(ctx); c != 0 {
			t.Fatalf("cancelled sweep checked %d", c)
		}
	})
}
