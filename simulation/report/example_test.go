package report_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/peerlink/peerlink/simulation"
	"github.com/peerlink/peerlink/simulation/report"
)

// Write a run's report: New builds the sections of what the Result
// measures; Add appends one of your own, here grouped bars.
func ExampleNew() {
	res := &simulation.Result{
		Scenario: "tiny", Nodes: 4, Edges: 4, Duration: simulation.Duration(10 * time.Second), TraceHash: "0123456789abcdef",
		Samples: []simulation.Sample{{At: 0, NodesUp: 4}, {At: simulation.Duration(time.Second), NodesUp: 4, EdgesUp: 4, MeanPeers: 2, MinPeers: 2}},
	}
	r := report.New(res)
	r.Add(report.Section{
		ID: "latency", Title: "Request latency",
		Charts: []report.Chart{&report.Bars{
			Title: "Latency by strategy", YLabel: "ms", Groups: []string{"p2c", "random"},
			Series: []report.BarSeries{{Name: "p50", Values: []float64{41, 63}}, {Name: "p99", Values: []float64{90, 210}}},
		}},
	})
	var b strings.Builder
	if err := r.WriteHTML(&b); err != nil {
		panic(err)
	}
	for _, s := range r.Sections {
		fmt.Println(s.Title)
	}
	fmt.Println(strings.Count(b.String(), "<svg "), "charts")
	// Output:
	// Summary
	// Connectivity over time
	// Reconnect times
	// Dead-link detection
	// Request latency
	// 3 charts
}

// A chart alone is an SVG document.
func ExampleCDF() {
	c := report.CDF("Time to reach 99 % of nodes", "seconds",
		report.Samples{Name: "k = 8", Values: []float64{0.41, 0.38, 0.52, 0.47}},
		report.Samples{Name: "k = 4", Values: []float64{0.71, 0.66, 0.93}})
	fmt.Println("last step of k = 8:", c.Series[0].Points[len(c.Series[0].Points)-1])
	var svg strings.Builder // or a file: an SVG document as it is
	if err := c.WriteSVG(&svg); err != nil {
		panic(err)
	}
	fmt.Println(strings.Contains(svg.String(), `<title>Time to reach 99 % of nodes</title>`))
	// Output:
	// last step of k = 8: {0.52 100}
	// true
}
