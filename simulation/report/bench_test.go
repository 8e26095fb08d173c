package report

import (
	"testing"

	"github.com/peerlink/peerlink/simulation"
)

// bigResult is a long run's worth of measures: 10 minutes sampled each
// second, 5,000 reconnects and 2,000 detections.
func bigResult() *simulation.Result {
	res := fakeResult()
	res.Samples = res.Samples[:0]
	for i := range 601 {
		res.Samples = append(res.Samples, simulation.Sample{At: sec(float64(i)), NodesUp: 1000 - i%7, EdgesUp: 4000 - i%31, MeanPeers: 8 - float64(i%5)/10, MinPeers: i % 8})
	}
	res.Reconnects = res.Reconnects[:0]
	for k := range 5000 {
		res.Reconnects = append(res.Reconnects, simulation.Reconnect{Cause: reconnectCauses[k%3], At: sec(float64(k % 600)), After: sec(float64(k%97) / 10)})
	}
	res.Detections = res.Detections[:0]
	for k := range 2000 {
		res.Detections = append(res.Detections, simulation.Detection{Cause: detectionCauses[k%3], Node: k % 1000, Peer: (k + 1) % 1000, At: sec(float64(k % 600)), After: sec(30 + float64(k%11))})
	}
	return res
}

// BenchmarkWriteReport renders bigResult's report: what -report adds
// to a large run.
func BenchmarkWriteReport(b *testing.B) {
	res := bigResult()
	var n countWriter
	b.ReportAllocs()
	for b.Loop() {
		n = 0
		if err := Write(&n, res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/1024, "KiB/report")
}

type countWriter int

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }
