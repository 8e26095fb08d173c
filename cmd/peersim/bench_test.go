package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkPeersimDefault runs the default scenario (100 nodes, 130
// virtual seconds of churn and faults) as the command does, in a child
// process (a benchmark cannot host a synctest bubble), and reports the
// run's wall time, how many times faster than real time it ran, and
// the memory per node it measured.
func BenchmarkPeersimDefault(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var wall, virtual, heap, goroutines float64
	for b.Loop() {
		cmd := exec.Command(exe, "-json")
		cmd.Env = append(os.Environ(), mainEnv+"=1")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			b.Fatalf("peersim: %v\n%s", err, errOut.String())
		}
		var r struct {
			Wall       string  `json:"wall_time"`
			Duration   string  `json:"duration"`
			Heap       float64 `json:"heap_per_node"`
			Goroutines float64 `json:"goroutines_per_node"`
		}
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			b.Fatal(err)
		}
		w, err1 := time.ParseDuration(r.Wall)
		v, err2 := time.ParseDuration(r.Duration)
		if err1 != nil || err2 != nil {
			b.Fatalf("durations %q, %q", r.Wall, r.Duration)
		}
		wall, virtual = wall+w.Seconds(), virtual+v.Seconds()
		heap, goroutines = r.Heap, r.Goroutines
	}
	b.ReportMetric(wall/float64(b.N), "wall_s/run")
	b.ReportMetric(virtual/wall, "x_real_time")
	b.ReportMetric(heap/1024, "heap_KiB/node")
	b.ReportMetric(goroutines, "goroutines/node")
}
