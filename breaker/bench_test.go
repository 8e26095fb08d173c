package breaker_test

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

// BenchmarkCircuitMemory reports the heap one peer's circuit costs, table
// entry included, measured over 100k peers (a large peer table).
func BenchmarkCircuitMemory(b *testing.B) {
	const n = 100_000
	ids := make([]peer.ID, n)
	for i := range ids {
		ids[i] = testID(i)
	}
	var perCircuit float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := breaker.NewRegistry(breaker.Settings{}, func(breaker.StateChange) {})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range ids {
			r.Execute(id, succeed)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perCircuit = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		if r.Len() != n {
			b.Fatalf("Len = %d", r.Len())
		}
		runtime.KeepAlive(r)
	}
	b.ReportMetric(perCircuit, "B/circuit")
}

// BenchmarkExecute is the cost a dial pays for going through its circuit,
// with many goroutines dialing 1024 known peers.
func BenchmarkExecute(b *testing.B) {
	r, err := breaker.NewRegistry(breaker.Settings{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	const peers = 1024
	ids := make([]peer.ID, peers)
	for i := range ids {
		ids[i] = testID(i)
		r.Execute(ids[i], succeed)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(7919)
		for pb.Next() {
			i++
			r.Execute(ids[i%peers], succeed)
		}
	})
}

// BenchmarkExecuteOpen is the cost of a refused dial.
func BenchmarkExecuteOpen(b *testing.B) {
	r, err := breaker.NewRegistry(breaker.Settings{FailureThreshold: 1, OpenTimeout: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	id := testID(1)
	r.Execute(id, fail)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Execute(id, succeed); !errors.Is(err, breaker.ErrOpen) {
			b.Fatal(err)
		}
	}
}
