package metrics_test

import (
	"fmt"
	"time"

	"github.com/peerlink/peerlink/metrics"
)

// A histogram's snapshot read as Prometheus buckets: cumulative counts
// at the upper bounds, with Count as the +Inf bucket and Sum as the sum.
func ExampleHistogramSnapshot_CumulativeCounts() {
	var h metrics.Histogram
	for _, ms := range []int{3, 8, 8, 20, 40, 90, 400} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	s := h.Snapshot()
	bounds := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	fmt.Println(s.CumulativeCounts(bounds, nil), s.Count, s.Sum)
	fmt.Println(s.Quantile(0.5).Round(time.Millisecond), s.Max)
	// Output:
	// [1 3 5 6] 7 569ms
	// 20ms 400ms
}

func ExamplePeakEWMA() {
	start := time.Unix(0, 0)
	p := metrics.NewPeakEWMA(time.Second)
	p.Observe(100, start)
	p.Observe(300, start.Add(time.Second)) // above: taken at once
	p.Observe(100, start.Add(2*time.Second))
	fmt.Println(p.Value()) // one half-life from 300 toward 100
	// Output: 200
}
