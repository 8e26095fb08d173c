package simulation

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Go benchmarks cannot host a synctest bubble (synctest.Test takes a
// *testing.T), so BenchmarkScale runs TestScaleChild in a child process
// of the test binary and reports what it measured.

const (
	scaleEnv     = "PEERLINK_SIM_SCALE_NODES"
	scaleBareEnv = "PEERLINK_SIM_SCALE_BARE"
	scalePrefix  = "SIMSCALE "
)

// scaleFigures is what the child reports.
type scaleFigures struct {
	Nodes             int     `json:"nodes"`
	Edges             int     `json:"edges"`
	Virtual           float64 `json:"virtual_s"`
	Wall              float64 `json:"wall_s"`
	HeapPerNode       int64   `json:"heap_per_node"`
	StackPerNode      int64   `json:"stack_per_node"`
	GoroutinesPerNode float64 `json:"goroutines_per_node"`
	FullyConnectedAt  float64 `json:"fully_connected_at_s"`
	TraceHash         string  `json:"trace_hash"`
	MaxRSS            int64   `json:"-"` // the child's peak, filled in by the parent
}

// scaleScenario is the baseline at n nodes: degree 8, 60 virtual
// seconds, 20–60 ms links (± 5 ms per packet) at 100 Mbit/s.
func scaleScenario(n int) Scenario {
	return Scenario{
		Name: "scale", Nodes: n, Degree: 8, Duration: Duration(time.Minute), Seed: 1,
		Link: LinkSpec{Latency: Duration(40 * time.Millisecond), Spread: Duration(20 * time.Millisecond), Jitter: Duration(5 * time.Millisecond), Bandwidth: 12_500_000},
		// One sample per 10 s: the samples are not what is measured.
		SampleEvery: Duration(10 * time.Second),
	}
}

// TestScaleChild runs the scale scenario when BenchmarkScale asks for it
// (the environment names the node count); otherwise it is skipped.
func TestScaleChild(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(scaleEnv))
	if err != nil {
		t.Skip("run by BenchmarkScale")
	}
	start := time.Now() // outside the bubble: the real clock
	sc := scaleScenario(n)
	if os.Getenv(scaleBareEnv) != "" {
		sc.Link = LinkSpec{} // no shaping: what the managers alone cost
	}
	var res *Result
	inBubble(t, func(t *testing.T) {
		var err error
		if res, err = Run(t.Context(), sc, bubbleOpts()); err != nil {
			t.Fatal(err)
		}
	})
	wall := time.Since(start)
	if !res.FullyConnected || res.DroppedEvents != 0 {
		t.Fatalf("not fully connected (%v) or events dropped (%d)", res.FullyConnected, res.DroppedEvents)
	}
	b, _ := json.Marshal(scaleFigures{
		Nodes: res.Nodes, Edges: res.Edges, Virtual: res.Duration.D().Seconds(), Wall: wall.Seconds(),
		HeapPerNode: res.HeapPerNode, StackPerNode: res.StackPerNode, GoroutinesPerNode: res.GoroutinesPerNode,
		FullyConnectedAt: res.FullyConnectedAt.D().Seconds(), TraceHash: res.TraceHash,
	})
	fmt.Println(scalePrefix + string(b))
}

// BenchmarkScale runs the baseline (degree 8, 60 virtual seconds) at
// each size in a child process and reports its wall time, heap and
// goroutines per node, and the child's peak RSS per node (stacks
// included, which the heap figure leaves out). Sizes:
// PEERLINK_SIM_SCALE_SIZES, comma-separated (default 100,1000). With
// PEERLINK_SIM_SCALE_BARE set the links are not shaped (no faultnet
// goroutines or buffers): what the managers and the memory transport
// alone cost.
func BenchmarkScale(b *testing.B) {
	sizes := "100,1000"
	if s := os.Getenv("PEERLINK_SIM_SCALE_SIZES"); s != "" {
		sizes = s
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("PEERLINK_SIM_SCALE_SIZES: %q is not a number", s)
		}
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var f scaleFigures
			for b.Loop() {
				f = runScaleChild(b, n)
			}
			b.ReportMetric(f.Wall, "wall-s")
			b.ReportMetric(f.Virtual/f.Wall, "virtual-s/wall-s")
			b.ReportMetric(float64(f.HeapPerNode), "heap-B/node")
			b.ReportMetric(float64(f.StackPerNode), "stack-B/node")
			b.ReportMetric(f.GoroutinesPerNode, "goroutines/node")
			b.ReportMetric(f.FullyConnectedAt, "connected-at-s")
			if f.MaxRSS > 0 {
				b.ReportMetric(float64(f.MaxRSS)/float64(n), "rss-B/node")
			}
		})
	}
}

func runScaleChild(b *testing.B, n int) scaleFigures {
	var f scaleFigures
	ps := runChild(b, "TestScaleChild", scaleEnv+"="+strconv.Itoa(n), scalePrefix, &f)
	f.MaxRSS = maxRSS(ps)
	return f
}

// runChild runs test in a child process of the test binary with env
// added, and decodes into v the JSON the child printed after prefix.
func runChild(b *testing.B, test, env, prefix string, v any) *os.ProcessState {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1", "-test.timeout=60m")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			if err := json.Unmarshal([]byte(line), v); err != nil {
				b.Fatal(err)
			}
			return cmd.ProcessState
		}
	}
	b.Fatalf("child printed no figures:\n%s", out)
	return nil
}
