package health_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
)

// idleTarget is a link with recent activity: a sweep never probes it.
type idleTarget struct {
	id   peer.ID
	last time.Time
}

func (t *idleTarget) Peer() peer.ID { return t.id }
func (t *idleTarget) Ping(context.Context) (time.Duration, error) {
	panic("idleTarget probed")
}
func (t *idleTarget) LastActivity() time.Time { return t.last }

type idleLink struct {
	t  *idleTarget
	st *health.State
}

// BenchmarkSweepIdle is the cost of a sweep over links that all had
// recent activity, so that none is probed: what a monitor costs a node
// whose links are busy. ns/target is the time per link per sweep,
// allocs/target the allocations per link per sweep (the sweep's own few
// are spread over its links), B/link the heap one link's State takes.
//
// "slice" iterates over a slice, the cost of the sweep itself; "table"
// iterates with peer.Table.Range, as a manager keeping its links in a
// peer.Table would.
func BenchmarkSweepIdle(b *testing.B) {
	now := time.Now()
	for _, n := range []int{1_000, 100_000} {
		links := make([]idleLink, n)
		table := peer.NewTable[idleLink](0)
		for i := range links {
			links[i] = idleLink{&idleTarget{testID(i), now}, health.NewState(now)}
			table.Store(links[i].t.id, links[i])
		}
		iters := map[string]func(yield func(health.Target, *health.State) bool){
			"slice": func(yield func(health.Target, *health.State) bool) {
				for _, l := range links {
					if !yield(l.t, l.st) {
						return
					}
				}
			},
			"table": func(yield func(health.Target, *health.State) bool) {
				for _, l := range table.Range {
					if !yield(l.t, l.st) {
						return
					}
				}
			},
		}
		for _, name := range []string{"slice", "table"} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				m, err := health.NewMonitor(health.MonitorConfig{
					Targets: iters[name],
					Now:     func() time.Time { return now.Add(time.Second) },
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				m.Sweep(ctx) // warm: the candidates buffer
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				for b.Loop() {
					if c, _ := m.Sweep(ctx); c != 0 {
						b.Fatalf("probed %d links", c)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&after)
				per := float64(b.N) * float64(n)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/target")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/target")
				b.ReportMetric(bytesPerState(), "B/link")
			})
		}
	}
}

// bytesPerState measures the heap 100k States take, per State.
func bytesPerState() float64 {
	const n = 100_000
	states := make([]*health.State, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := time.Now()
	for i := range states {
		states[i] = health.NewState(now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(states)
	return float64(after.HeapAlloc-before.HeapAlloc) / n
}

func TestStateSize(t *testing.T) {
	var s health.State
	if size := unsafe.Sizeof(s); size > 112 && unsafe.Sizeof(uintptr(0)) == 8 {
		t.Errorf("State is %d bytes, want at most 112 (it exists per link)", size)
	}
}
