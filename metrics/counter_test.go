package metrics

import (
	"sync"
	"testing"
)

func TestCounterGauge(t *testing.T) {
	var c Counter
	var g Gauge
	c.Inc()
	c.Add(41)
	g.Set(10)
	g.Add(-3)
	g.Inc()
	g.Dec()
	g.Dec()
	if c.Load() != 42 || g.Load() != 6 {
		t.Fatalf("counter %d gauge %d, want 42 and 6", c.Load(), g.Load())
	}
}

func TestCounterGaugeConcurrent(t *testing.T) {
	var c Counter
	var g Gauge
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Inc()
				g.Inc()
				g.Dec()
				g.Add(2)
			}
		})
	}
	wg.Wait()
	if c.Load() != 8000 || g.Load() != 16000 {
		t.Fatalf("counter %d gauge %d, want 8000 and 16000", c.Load(), g.Load())
	}
}
