package report

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/peerlink/peerlink/simulation"
)

// loadResult is workloadResult as a run under load reports it: latency,
// errors by cause and load concentration per strategy.
func loadResult() *simulation.Result {
	res := workloadResult()
	lat := []simulation.Summary{
		{Count: 30, P50: sec(0.25), P90: sec(0.49), P99: sec(1.35)},
		{Count: 30, P50: sec(0.33), P90: sec(0.6), P99: sec(1.7)},
		{Count: 28, P50: sec(0.32), P90: sec(0.78), P99: sec(1.85)},
	}
	for i := range res.Selection {
		q := &res.Selection[i]
		q.Latency = lat[i]
		q.BusiestShare, q.LoadMaxMean = 0.1+0.01*float64(i), 1.3+0.1*float64(i)
		q.ErrorCauses = map[string]int{"overloaded": 1, "timeout": 2 + i}
	}
	return res
}

// latencyChart is the title of the chart of request latency by strategy.
const latencyChart = "Request latency by strategy"

// Under load the report shows each strategy's latency percentiles as
// bars, and the summary what each strategy's users felt.
func TestReportOfLoad(t *testing.T) {
	page := render(t, loadResult())
	titles := chartTitles(t, page)
	all := svgs(t, page)
	k := -1
	for i, title := range titles {
		if title == latencyChart {
			k = i
		}
	}
	if k < 0 {
		t.Fatalf("no chart %q among %q", latencyChart, titles)
	}
	for _, s := range []string{"p50", "p90", "p99"} {
		// One bar per strategy.
		if n := strings.Count(seriesGroup(t, all[k], s), "<rect"); n != 3 {
			t.Errorf("series %s: %d bars, want 3 (one per strategy)", s, n)
		}
	}
	for _, want := range []string{
		"<td>requests: p2c</td><td>latency p50 250ms, p90 490ms, p99 1.35s; errors overloaded 1, timeout 2; busiest server 10.0 % of picks (1.30× the mean)</td>",
		"<td>requests: random</td><td>latency p50 320ms, p90 780ms, p99 1.85s; errors overloaded 1, timeout 4; busiest server 12.0 % of picks (1.50× the mean)</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Without latencies (no request answered) there is no such chart.
	if strings.Contains(render(t, workloadResult()), latencyChart) {
		t.Errorf("a run with no request latency has the chart %q", latencyChart)
	}
}

// TestLoadChartInChromium: Chromium parses the latency chart with its
// three series, a bar per strategy in each.
func TestLoadChartInChromium(t *testing.T) {
	chromiumPath(t)
	page := writePage(t, "load.html", render(t, loadResult()))
	dom := string(chromium(t, page, "--dump-dom"))
	var chart string
	for _, svg := range regexp.MustCompile(`(?s)<svg [^>]*>.*?</svg>`).FindAllString(dom, -1) {
		if strings.Contains(svg, "<title>"+latencyChart+"</title>") {
			chart = svg
		}
	}
	if chart == "" {
		t.Fatalf("Chromium's DOM has no chart %q", latencyChart)
	}
	for _, s := range []string{"p50", "p90", "p99"} {
		m := regexp.MustCompile(`<g class="series" data-series="` + s + `" data-points="(\d+)">(.*?)</g>`).FindStringSubmatch(chart)
		if m == nil {
			t.Errorf("no series %q in Chromium's DOM", s)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n != 3 || strings.Count(m[2], "<rect ") != 3 {
			t.Errorf("series %q: %s points, %d bars drawn, want 3 each", s, m[1], strings.Count(m[2], "<rect "))
		}
	}
}
