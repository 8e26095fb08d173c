package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests open reports in headless Chromium, as a reader's browser
// would: the page must parse into the charts and series the report
// wrote, and the charts must paint their series. They are skipped when
// no Chromium is installed (.ci/run installs Debian's chromium).

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("headless Chromium not found (chromium, chromium-browser or google-chrome in PATH): " +
		"install Debian's chromium package to check that reports render")
	return ""
}

// chromium runs Chromium headless on the page at path with args, and
// returns its standard output.
func chromium(t *testing.T, page string, args ...string) []byte {
	t.Helper()
	bin := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := append([]string{
		"--headless", "--disable-gpu", "--no-sandbox", // root in a container has no sandbox
		"--no-first-run", "--disable-extensions", "--user-data-dir=" + t.TempDir(),
		"--force-device-scale-factor=1", "--hide-scrollbars",
	}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, "file://"+page)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return stdout.Bytes()
}

func writePage(t *testing.T, name, html string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReportDOMInChromium checks that Chromium parses the report into
// every chart, each an <svg> with its title and its series.
func TestReportDOMInChromium(t *testing.T) {
	chromiumPath(t)
	page := writePage(t, "report.html", render(t, fakeResult()))
	dom := string(chromium(t, page, "--dump-dom"))
	svgs := regexp.MustCompile(`(?s)<svg [^>]*>.*?</svg>`).FindAllString(dom, -1)
	if len(svgs) != len(wantCharts) {
		t.Fatalf("Chromium's DOM has %d SVG elements, want %d:\n%s", len(svgs), len(wantCharts), dom)
	}
	for k, w := range wantCharts {
		if !strings.Contains(svgs[k], "<title>"+w.title+"</title>") {
			t.Errorf("SVG %d in Chromium's DOM is not titled %q: %.300s", k, w.title, svgs[k])
			continue
		}
		for _, s := range w.series {
			m := regexp.MustCompile(`<g class="series" data-series="` + regexp.QuoteMeta(esc(s)) + `" data-points="(\d+)">(.*?)</g>`).FindStringSubmatch(svgs[k])
			if m == nil {
				t.Errorf("chart %q in Chromium's DOM has no series %q", w.title, s)
				continue
			}
			// Every series of the fake result has data: something
			// to draw.
			if n, _ := strconv.Atoi(m[1]); n == 0 || !regexp.MustCompile(`<(path|circle|rect) `).MatchString(m[2]) {
				t.Errorf("chart %q, series %q: nothing drawn in Chromium's DOM: %s", w.title, s, m[2])
			}
		}
	}
	for _, h := range []string{"Summary", "Connectivity over time", "Reconnect times", "Dead-link detection"} {
		if !strings.Contains(dom, "<h2>"+h+"</h2>") {
			t.Errorf("Chromium's DOM has no section %q", h)
		}
	}
}

// TestChartsPaintInChromium takes a screenshot of each kind of chart and
// looks for each series' colour inside the plot area (below the legend,
// whose swatches carry the colours too): the series were painted where
// the axes put them.
func TestChartsPaintInChromium(t *testing.T) {
	chromiumPath(t)
	charts := []Chart{
		&LineChart{Title: "line", Series: []Series{
			{Name: "a", Points: []Point{{0, 1}, {5, 3}, {10, 2}}},
			{Name: "b", Points: []Point{{0, 2}, {10, 0.5}}},
		}},
		&LineChart{Title: "step", Step: true, Series: []Series{
			{Name: "a", Points: []Point{{0, 1}, {5, 3}, {10, 2}}},
			{Name: "b", Points: []Point{{0, 2}, {10, 0.5}}},
		}},
		CDF("cdf", "s", Samples{Name: "a", Values: []float64{1, 2, 3, 4}}, Samples{Name: "b", Values: []float64{2, 5}}),
		&Scatter{Title: "scatter", Series: []Series{
			{Name: "a", Points: []Point{{1, 1}, {2, 2}, {3, 1}}},
			{Name: "b", Points: []Point{{4, 4}, {5, 3}}},
		}},
		&Bars{Title: "bars", Groups: []string{"x", "y"}, Series: []BarSeries{{Name: "a", Values: []float64{1, 2}}, {Name: "b", Values: []float64{3, 1}}}},
	}
	for _, c := range charts {
		t.Run(c.ChartTitle(), func(t *testing.T) {
			var b bytes.Buffer
			b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0;background:#fff">`)
			if err := c.WriteSVG(&b); err != nil {
				t.Fatal(err)
			}
			b.WriteString(`</body></html>`)
			page := writePage(t, "chart.html", b.String())
			shot := filepath.Join(t.TempDir(), "shot.png")
			chromium(t, page, "--screenshot="+shot, "--window-size=760,400")
			f, err := os.Open(shot)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			plot := image.Rect(marginLeft+1, plotTop+1, chartW-marginRight, plotBottom)
			for i := range 2 {
				if n := countColor(img, plot, Color(i)); n < 15 {
					t.Errorf("series %d: %d pixels of its colour %s in the plot area, want a line, dots or bars", i, n, Color(i))
				}
			}
			if n := countColor(img, image.Rect(0, 0, chartW, chartH), "#ffffff"); n < chartW*chartH/2 {
				t.Errorf("%d white pixels: the chart's background did not paint", n)
			}
		})
	}
}

// countColor counts the pixels of r within 8 per channel of colour hex
// (#rrggbb): the cores of lines, dots and bars, not their blended edges.
func countColor(img image.Image, r image.Rectangle, hex string) int {
	want := [3]int{}
	for k := range want {
		v, _ := strconv.ParseUint(hex[1+2*k:3+2*k], 16, 8)
		want[k] = int(v)
	}
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			got := [3]int{int(cr >> 8), int(cg >> 8), int(cb >> 8)}
			ok := true
			for k := range got {
				if d := got[k] - want[k]; d < -8 || d > 8 {
					ok = false
				}
			}
			if ok {
				n++
			}
		}
	}
	return n
}
