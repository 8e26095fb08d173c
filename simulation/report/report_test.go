package report

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/simulation"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sec(f float64) simulation.Duration { return simulation.Duration(f * float64(time.Second)) }

// fakeResult is a result with every measure the report draws, made by
// hand so that the tests know what each chart must hold.
func fakeResult() *simulation.Result {
	res := &simulation.Result{
		Scenario: "fake", Seed: 9, Nodes: 10, Edges: 20, Duration: sec(60),
		TraceHash: "00112233aabbccdd", TraceLen: 345,
		FullyConnected: true, FullyConnectedAt: sec(1.5),
		Crashes: 2, Restarts: 2,
		HeapPerNode: 300 << 10, StackPerNode: 200 << 10, GoroutinesPerNode: 50,
	}
	for i := range 61 {
		up := 10
		if i >= 20 && i < 30 {
			up = 9
		}
		res.Samples = append(res.Samples, simulation.Sample{At: sec(float64(i)), NodesUp: up, EdgesUp: 2 * up, MeanPeers: 4 * float64(up) / 10, MinPeers: up / 3})
	}
	for k := range 5 {
		res.Reconnects = append(res.Reconnects, simulation.Reconnect{Cause: "restart", Edge: [2]int{1, k + 2}, At: sec(30), After: sec(0.5 + float64(k))})
	}
	for k := range 3 {
		res.Reconnects = append(res.Reconnects, simulation.Reconnect{Cause: "heal", Edge: [2]int{3, k + 5}, At: sec(45), After: sec(2 + float64(k))})
	}
	res.ReconnectAfterRestart = simulation.Summary{Count: 5, Mean: sec(2.5), P50: sec(2.5), P90: sec(4.5), Max: sec(4.5)}
	res.ReconnectAfterHeal = simulation.Summary{Count: 3, Missing: 1, Mean: sec(3), P50: sec(3), P90: sec(4), Max: sec(4)}
	res.Detections = []simulation.Detection{
		{Cause: "blackhole", Node: 0, Peer: 1, At: sec(10), After: sec(31)},
		{Cause: "blackhole", Node: 1, Peer: 0, At: sec(10), After: sec(33)},
		{Cause: "poweroff", Node: 4, Peer: 7, At: sec(20), After: sec(35)},
	}
	res.DeadLinkDetection = simulation.Summary{Count: 3, Mean: sec(33), P50: sec(33), P90: sec(35), Max: sec(35)}
	return res
}

func render(t *testing.T, res *simulation.Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, res); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.String()
}

// svgs returns the page's SVG elements, each checked to be well-formed.
func svgs(t *testing.T, page string) []string {
	t.Helper()
	all := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
	for _, s := range all {
		wellFormed(t, s)
	}
	return all
}

// chartTitles returns the <title> of each SVG.
func chartTitles(t *testing.T, page string) []string {
	t.Helper()
	var out []string
	for _, s := range svgs(t, page) {
		m := regexp.MustCompile(`<title>([^<]*)</title>`).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("SVG without a title: %.200s", s)
		}
		out = append(out, m[1])
	}
	return out
}

// wantCharts are the charts of fakeResult's report, in order, with
// their series.
var wantCharts = []struct {
	title  string
	series []string
}{
	{"Nodes and links up over time", []string{"nodes up (% of nodes)", "edges up (% of edges)"}},
	{"Connected peers per node over time", []string{"mean peers per node", "fewest peers of a node"}},
	{"Reconnect time by cause (CDF)", []string{"restart", "heal"}},
	{"Reconnect time percentiles by cause", []string{"p50", "p90", "max"}},
	{"Reconnect time against when the fault ended", []string{"restart", "heal"}},
	{"Dead-link detection time by cause (CDF)", []string{"blackhole", "poweroff"}},
	{"Detection time against when the link went silent", []string{"blackhole", "poweroff"}},
}

func TestReportHasEveryChart(t *testing.T) {
	page := render(t, fakeResult())
	titles := chartTitles(t, page)
	if len(titles) != len(wantCharts) {
		t.Fatalf("charts %q, want %d", titles, len(wantCharts))
	}
	all := svgs(t, page)
	for k, w := range wantCharts {
		if titles[k] != w.title {
			t.Errorf("chart %d is %q, want %q", k, titles[k], w.title)
			continue
		}
		for _, s := range w.series {
			if !strings.Contains(all[k], `data-series="`+esc(s)+`"`) {
				t.Errorf("chart %q has no series %q", w.title, s)
			}
		}
	}
	// The CDF of restarts has a step per reconnect: 5 values, 6 points.
	if !strings.Contains(all[2], `data-series="restart" data-points="6"`) {
		t.Errorf("restart CDF does not hold the 5 reconnects:\n%s", all[2])
	}
	// Detections: two black-hole dots, one power-off dot.
	if n := strings.Count(seriesGroup(t, all[6], "blackhole"), "<circle"); n != 2 {
		t.Errorf("%d black-hole detections drawn, want 2", n)
	}
	for _, want := range []string{
		"<h2>Summary</h2>", "<h2>Connectivity over time</h2>", "<h2>Reconnect times</h2>", "<h2>Dead-link detection</h2>",
		"<td>fully connected at</td><td>1.5s</td>",
		"<td>reconnect after heal</td><td>3: p50 3s, p90 4s, max 4s; 1 never completed</td>",
		"1 edges had not reconnected by the end of the run",
		"<td>blackhole</td><td>0</td><td>1</td><td>10s</td><td>31s</td>",
		"00112233aabbccdd",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestReportStandsAlone(t *testing.T) {
	page := render(t, fakeResult())
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("report has %q: it must need nothing but itself", bad)
		}
	}
	// The only URL is SVG's namespace, which is a name, not a fetch.
	rest := strings.ReplaceAll(page, "http://www.w3.org/2000/svg", "")
	if strings.Contains(rest, "http:") || strings.Contains(rest, "https:") || strings.Contains(rest, "//") {
		t.Errorf("report refers to a URL")
	}
	if !strings.Contains(page, "default-src 'none'") {
		t.Error("report has no content security policy forbidding fetches")
	}
}

func TestReportRepeats(t *testing.T) {
	if a, b := render(t, fakeResult()), render(t, fakeResult()); a != b {
		t.Error("two reports of one result differ")
	}
}

func TestReportOfEmptyResult(t *testing.T) {
	// A run too short to sample, with no faults: the summary still
	// shows, and the fault sections say there was nothing to measure.
	page := render(t, &simulation.Result{Nodes: 2, Edges: 1, Duration: sec(1), TraceHash: "0"})
	for _, want := range []string{"unnamed scenario", "No reconnects in this run", "No detections in this run", "<td>fully connected at</td><td>never"} {
		if !strings.Contains(page, want) {
			t.Errorf("report of an empty result lacks %q", want)
		}
	}
	if titles := chartTitles(t, page); len(titles) != 0 {
		t.Errorf("charts %q of an empty result, want none", titles)
	}
}

func TestReportAddSection(t *testing.T) {
	r := New(fakeResult())
	r.Add(Section{ID: "regret", Title: "Selection regret", Text: []string{"a < b"},
		Charts: []Chart{&Bars{Title: "Regret by strategy", Groups: []string{"p2c", "random"}, Series: []BarSeries{{Name: "mean", Values: []float64{1.1, 2.5}}}}}})
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	titles := chartTitles(t, page)
	if titles[len(titles)-1] != "Regret by strategy" || !strings.Contains(page, `<a href="#regret">Selection regret</a>`) || !strings.Contains(page, "<p>a &lt; b</p>") {
		t.Errorf("added section missing from the page or its contents")
	}
}

// TestReportOfRun renders the result of a real run, in virtual time:
// a crash with restart and a power cut, whose measures must reach the
// charts; and the result read back from its JSON gives the same charts,
// less the fault marks, which come from the trace JSON leaves out.
func TestReportOfRun(t *testing.T) {
	sc := simulation.Scenario{
		Name: "report-run", Nodes: 8, Degree: 4, Duration: sec(60), Seed: 5,
		Link:   simulation.LinkSpec{Latency: simulation.Duration(10 * time.Millisecond)},
		Health: simulation.HealthSpec{Interval: sec(2), Timeout: sec(1), FailureThreshold: 2},
		Faults: []simulation.Fault{
			{Kind: simulation.FaultCrash, At: sec(10), For: sec(5), Nodes: []int{3}},
			{Kind: simulation.FaultPowerOff, At: sec(25), For: sec(10), Nodes: []int{6}},
		},
	}
	var res *simulation.Result
	runtime.GC()
	runtime.GC()
	synctest.Test(t, func(t *testing.T) {
		var err error
		if res, err = simulation.Run(context.Background(), sc, simulation.Options{Settle: synctest.Wait}); err != nil {
			t.Fatal(err)
		}
	})
	runtime.GC()
	runtime.GC()
	if res.ReconnectAfterRestart.Count == 0 || res.DeadLinkDetection.Count == 0 {
		t.Fatalf("the run measured no reconnect or no detection: %+v %+v", res.ReconnectAfterRestart, res.DeadLinkDetection)
	}
	page := render(t, res)
	titles := chartTitles(t, page)
	for _, w := range []string{"Nodes and links up over time", "Reconnect time by cause (CDF)", "Dead-link detection time by cause (CDF)"} {
		if !strings.Contains(strings.Join(titles, "|"), w) {
			t.Errorf("report of the run lacks chart %q (has %q)", w, titles)
		}
	}
	// Crash, power-off and their restarts: four faults marked.
	first := svgs(t, page)[0]
	if n := strings.Count(first, `class="mark"`); n != 4 {
		t.Errorf("%d fault marks, want 4 (crash, restart, power-off, restart)", n)
	}
	if !strings.Contains(first, "<title>crash at 10s, nodes 3</title>") {
		t.Errorf("crash mark without its label")
	}
	for _, row := range []string{
		"<tr><td>10s</td><td>crash</td><td>3</td></tr>", "<tr><td>15s</td><td>restart</td><td>3</td></tr>",
		"<tr><td>25s</td><td>poweroff</td><td>6</td></tr>", "<tr><td>35s</td><td>restart</td><td>6</td></tr>",
	} {
		if !strings.Contains(page, row) {
			t.Errorf("faults table lacks %s", row)
		}
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back simulation.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again := render(t, &back)
	if got := chartTitles(t, again); strings.Join(got, "|") != strings.Join(titles, "|") {
		t.Errorf("charts from JSON %q, from the run %q", got, titles)
	}
	if strings.Contains(again, `class="mark"`) || strings.Contains(again, `id="faults"`) {
		t.Error("fault marks or a faults section from a result without a trace")
	}
}

func TestLongTablesAreCut(t *testing.T) {
	res := fakeResult()
	for k := range 100 {
		res.Detections = append(res.Detections, simulation.Detection{Cause: "partition", Node: k, Peer: k + 1, At: sec(5), After: sec(20 + float64(k)/10)})
	}
	page := render(t, res)
	if !strings.Contains(page, "<caption>Detections (first 40 of 103)</caption>") {
		t.Error("no caption saying the detections table was cut")
	}
	table := regexp.MustCompile(`(?s)<caption>Detections.*?</table>`).FindString(page)
	if n := strings.Count(table, "<tr><td>"); n != 40 {
		t.Errorf("detections table has %d rows, want 40", n)
	}
	// The charts still show every case: partition is a third cause.
	if !strings.Contains(page, `data-series="partition" data-points="101"`) {
		t.Error("detection CDF does not hold the 100 partition cases")
	}
}
