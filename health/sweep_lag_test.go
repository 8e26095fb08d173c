package health_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/health"
)

// TestFailingLinkProbedEverySweep: a link whose probes fail is probed
// again at every sweep, even though its probes start after the sweep
// read the clock. Here the sweep spends 1 ms (of virtual time) going over
// the other links, as one over 100k links does, so each probe is sent
// 1 ms after the sweep's clock reading; the next sweep, Interval later,
// then finds the last probe only Interval-1ms ago. Counting from the
// probe, the link used to wait for a second sweep each time: probes at
// 10s, 30s, 50s, 70s and death at 71s, past DetectionBound (54s).
func TestFailingLinkProbedEverySweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		cfg := health.Config{Interval: 10 * time.Second, Timeout: time.Second, FailureThreshold: 4}
		mute := newFake(1, silent)
		mute.setActivity(start)
		links := []link{{mute, cfg.NewState(start)}}
		var ev events
		m, err := health.NewMonitor(health.MonitorConfig{
			Config: cfg,
			Targets: func(yield func(health.Target, *health.State) bool) {
				seq(links)(yield)
				time.Sleep(time.Millisecond) // the rest of a long table
			},
			OnResult: ev.onResult,
			OnDead:   ev.onDead,
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(m)
		time.Sleep(2 * time.Minute)
		stop()

		ev.mu.Lock()
		var sent []time.Duration
		for _, e := range ev.results {
			sent = append(sent, e.r.Time.Sub(start))
		}
		ev.mu.Unlock()
		want := []time.Duration{10001 * time.Millisecond, 20001 * time.Millisecond, 30001 * time.Millisecond, 40001 * time.Millisecond}
		if len(sent) != len(want) {
			t.Fatalf("probes sent at %v, want %v", sent, want)
		}
		for i := range want {
			if sent[i] != want[i] {
				t.Fatalf("probes sent at %v, want %v", sent, want)
			}
		}
		d := ev.deaths()
		if len(d) != 1 {
			t.Fatalf("%d deaths, want 1", len(d))
		}
		took, bound := d[0].at.Sub(start), cfg.DetectionBound()
		if took != 41001*time.Millisecond || took > bound {
			t.Errorf("declared dead %v after its last byte, want 41.001s (DetectionBound %v)", took, bound)
		}
		t.Logf("probes sent at %v; declared dead %v after its last byte (DetectionBound %v)", sent, took, bound)
	})
}
