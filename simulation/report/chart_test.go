package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// svgOf renders c and checks that it is well-formed XML, as an SVG file
// or an inline SVG must be.
func svgOf(t *testing.T, c Chart) string {
	t.Helper()
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatalf("WriteSVG: %v", err)
	}
	wellFormed(t, b.String())
	return b.String()
}

func wellFormed(t *testing.T, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
	}
}

// seriesGroup returns the markup of the series named name.
func seriesGroup(t *testing.T, svg, name string) string {
	t.Helper()
	re := regexp.MustCompile(`<g class="series" data-series="` + regexp.QuoteMeta(name) + `" data-points="\d+">(.*?)</g>`)
	m := re.FindStringSubmatch(svg)
	if m == nil {
		t.Fatalf("no series %q in\n%s", name, svg)
	}
	return m[1]
}

// numbers returns the numbers in s, in order.
func numbers(t *testing.T, s string) []float64 {
	t.Helper()
	var out []float64
	for _, f := range regexp.MustCompile(`-?[0-9]+(\.[0-9]+)?`).FindAllString(s, -1) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// attrs returns the numbers of every attribute called name in markup.
func attrs(t *testing.T, markup, name string) []float64 {
	t.Helper()
	var s []string
	for _, m := range regexp.MustCompile(` `+name+`="([^"]*)"`).FindAllStringSubmatch(markup, -1) {
		s = append(s, m[1])
	}
	return numbers(t, strings.Join(s, " "))
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct{ raw, want float64 }{
		{0.7, 1}, {1, 1}, {1.2, 2}, {2, 2}, {2.2, 2.5}, {3, 5}, {0.21, 0.25}, {7, 10}, {18.6, 20}, {0.013, 0.02}, {450, 500}, {1e6, 1e6},
	} {
		if got := niceStep(c.raw); math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.raw, got, c.want)
		}
	}
}

func TestAxisSpansZeroAndRoundTicks(t *testing.T) {
	a := newAxis([]float64{3, 130}, 0, 700)
	if a.lo != 0 || a.hi != 140 || a.step != 20 {
		t.Errorf("axis of 3..130: %v..%v step %v, want 0..140 step 20", a.lo, a.hi, a.step)
	}
	if got := a.ticks(); len(got) != 8 || got[7] != 140 {
		t.Errorf("ticks %v, want 0, 20, …, 140", got)
	}
	if a.at(0) != 0 || a.at(140) != 700 || a.at(70) != 350 {
		t.Errorf("mapping: at(0)=%v at(70)=%v at(140)=%v", a.at(0), a.at(70), a.at(140))
	}
	// Negative data keep their sign and zero; a single value still
	// gives a span.
	n := newAxis([]float64{-0.3, 0.2}, 0, 1)
	if n.lo > -0.3 || n.hi < 0.2 || n.lo != roundTo(n.lo, n.step) {
		t.Errorf("axis of -0.3..0.2: %v..%v step %v", n.lo, n.hi, n.step)
	}
	one := newAxis([]float64{0}, 0, 1)
	if !(one.hi > one.lo) {
		t.Errorf("axis of one zero value: %v..%v", one.lo, one.hi)
	}
	// Labels print at the step's precision, without float noise.
	f := newAxis([]float64{0, 0.7}, 0, 1)
	var labels []string
	for _, v := range f.ticks() {
		labels = append(labels, f.label(v))
	}
	if got := strings.Join(labels, " "); got != "0.0 0.1 0.2 0.3 0.4 0.5 0.6 0.7" {
		t.Errorf("labels of 0..0.7: %s", got)
	}
	q := newAxis([]float64{0, 1.6}, 0, 1)
	labels = labels[:0]
	for _, v := range q.ticks() {
		labels = append(labels, q.label(v))
	}
	if got := strings.Join(labels, " "); got != "0.00 0.25 0.50 0.75 1.00 1.25 1.50 1.75" {
		t.Errorf("labels of 0..1.6: %s", got)
	}
}

func TestCDF(t *testing.T) {
	c := CDF("t", "s",
		Samples{Name: "a", Values: []float64{3, 1, 2, 2}},
		Samples{Name: "empty"},
		Samples{Name: "nan", Values: []float64{math.NaN(), math.Inf(1)}},
	)
	if len(c.Series) != 1 || c.Series[0].Name != "a" {
		t.Fatalf("series %+v, want only a (the others have no finite value)", c.Series)
	}
	want := []Point{{1, 0}, {1, 25}, {2, 75}, {3, 100}}
	if got := c.Series[0].Points; !equalPoints(got, want) {
		t.Errorf("CDF points %v, want %v", got, want)
	}
	if !c.Step {
		t.Error("a CDF is a staircase")
	}
}

func equalPoints(a, b []Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i].X-b[i].X) > 1e-9 || math.Abs(a[i].Y-b[i].Y) > 1e-9 {
			return false
		}
	}
	return true
}

func TestLineChartPlacesPoints(t *testing.T) {
	c := &LineChart{Title: "Line", XLabel: "x", YLabel: "y", Series: []Series{
		{Name: "up", Points: []Point{{0, 0}, {70, 50}, {140, 100}}},
		{Name: "flat", Points: []Point{{0, 10}, {math.NaN(), 3}, {140, 10}}},
	}}
	svg := svgOf(t, c)
	// x spans 0..150 over the plot's width (140 and a margin, rounded
	// to ticks of 25), y 0..100 over its height (upwards).
	d := regexp.MustCompile(`d="([^"]*)"`).FindStringSubmatch(seriesGroup(t, svg, "up"))[1]
	w := plotRight() - plotLeft()
	want := []float64{plotLeft(), plotBottom, plotLeft() + w*70/150, (plotTop + plotBottom) / 2, plotLeft() + w*140/150, plotTop}
	if nums := numbers(t, d); !near(nums, want) {
		t.Errorf("path %q: %v, want %v", d, nums, want)
	}
	if !strings.HasPrefix(d, "M") || strings.Count(d, "L") != 2 {
		t.Errorf("path %q: want a move and two straight segments", d)
	}
	// The NaN point is left out, and counted out.
	if !strings.Contains(svg, `data-series="flat" data-points="2"`) {
		t.Errorf("series flat does not count 2 points:\n%s", svg)
	}
	if !strings.Contains(svg, "<title>Line</title>") || !strings.Contains(svg, `class="legend"`) {
		t.Errorf("no title or legend:\n%s", svg)
	}

	c.Step = true
	step := regexp.MustCompile(`d="([^"]*)"`).FindStringSubmatch(seriesGroup(t, svgOf(t, c), "up"))[1]
	// A staircase holds each value until the next point: across, then up.
	if strings.Count(step, "H") != 2 || strings.Count(step, "V") != 2 {
		t.Errorf("step path %q: want two H and two V", step)
	}
}

func near(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 0.051 {
			return false
		}
	}
	return true
}

func TestLineChartMarks(t *testing.T) {
	c := &LineChart{Title: "m", Series: []Series{{Name: "s", Points: []Point{{0, 1}, {10, 1}}}},
		Marks: []Mark{{X: 5, Label: "crash node 3"}, {X: 5, Label: "crash node 4"}, {X: 20, Label: "heal"}}}
	svg := svgOf(t, c)
	if n := strings.Count(svg, `class="mark"`); n != 2 {
		t.Errorf("%d mark lines, want 2 (two marks share a pixel)", n)
	}
	if !strings.Contains(svg, "<title>crash node 3; crash node 4</title>") {
		t.Errorf("marks on one pixel do not share their labels:\n%s", svg)
	}
	// A mark past the data widens the axis to show it.
	if !strings.Contains(svg, ">20</text>") {
		t.Errorf("x axis does not reach the mark at 20:\n%s", svg)
	}
}

func TestScatter(t *testing.T) {
	c := &Scatter{Title: "Score against latency", XLabel: "ms", YLabel: "score", Series: []Series{
		{Name: "healthy", Points: []Point{{10, 0.9}, {20, 0.8}, {30, 0.85}}},
		{Name: "degraded", Points: []Point{{200, 0.2}, {math.Inf(1), 0}}},
	}}
	svg := svgOf(t, c)
	if n := strings.Count(seriesGroup(t, svg, "healthy"), "<circle"); n != 3 {
		t.Errorf("healthy: %d dots, want 3", n)
	}
	deg := seriesGroup(t, svg, "degraded")
	if n := strings.Count(deg, "<circle"); n != 1 {
		t.Errorf("degraded: %d dots, want 1 (the infinite point is left out)", n)
	}
	if !strings.Contains(deg, Color(1)) {
		t.Errorf("second series not in the second colour %s: %s", Color(1), deg)
	}
}

func TestBars(t *testing.T) {
	c := &Bars{Title: "Regret by strategy", YLabel: "regret", Groups: []string{"p2c", "score", "random"},
		Series: []BarSeries{{Name: "mean", Values: []float64{1, 2, 4}}, {Name: "p99", Values: []float64{2, math.NaN(), 8, 99}}}}
	svg := svgOf(t, c)
	mean := seriesGroup(t, svg, "mean")
	if n := strings.Count(mean, "<rect"); n != 3 {
		t.Fatalf("mean: %d bars, want 3", n)
	}
	h := attrs(t, mean, "height")
	if len(h) != 3 || math.Abs(h[1]-2*h[0]) > 0.25 || math.Abs(h[2]-4*h[0]) > 0.45 {
		t.Errorf("bar heights %v, want proportional to 1, 2, 4", h)
	}
	// NaN leaves its bar out; a value past the groups is ignored.
	if n := strings.Count(seriesGroup(t, svg, "p99"), "<rect"); n != 2 {
		t.Errorf("p99: %d bars, want 2", n)
	}
	for _, g := range c.Groups {
		if !strings.Contains(svg, ">"+g+"</text>") {
			t.Errorf("no group label %q", g)
		}
	}
	if !strings.Contains(mean, "<title>random, mean: 4</title>") {
		t.Errorf("bar without its value as a tooltip: %s", mean)
	}
}

func TestChartsWithoutData(t *testing.T) {
	for _, c := range []Chart{
		&LineChart{Title: "l", Series: []Series{{Name: "s"}}},
		&Scatter{Title: "s"},
		&Bars{Title: "b", Groups: []string{"g"}, Series: []BarSeries{{Name: "x", Values: []float64{math.NaN()}}}},
		CDF("c", "x", Samples{Name: "none"}),
	} {
		if svg := svgOf(t, c); !strings.Contains(svg, ">no data</text>") {
			t.Errorf("%s: no 'no data' note:\n%s", c.ChartTitle(), svg)
		}
	}
}

func TestChartTextIsEscaped(t *testing.T) {
	c := &LineChart{Title: `<script>alert("t")</script>`, XLabel: "a & b", Series: []Series{{Name: `"><img src=x>`, Points: []Point{{1, 1}, {2, 2}}}}}
	svg := svgOf(t, c)
	if strings.Contains(svg, "<script") || strings.Contains(svg, "<img") {
		t.Errorf("markup from the data reached the SVG:\n%s", svg)
	}
}

func TestChartsRepeat(t *testing.T) {
	mk := func() Chart {
		return &LineChart{Title: "r", Step: true, Series: []Series{{Name: "a", Points: []Point{{0, 1}, {1.5, 2.25}, {3, 0.125}}}},
			Marks: []Mark{{X: 2, Label: "b"}, {X: 1, Label: "a"}}}
	}
	if a, b := svgOf(t, mk()), svgOf(t, mk()); a != b {
		t.Errorf("two renderings of one chart differ:\n%s\n%s", a, b)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

func TestWriteSVGReportsWriteErrors(t *testing.T) {
	c := &Scatter{Title: "s", Series: []Series{{Name: "a", Points: make([]Point, 5000)}}}
	if err := c.WriteSVG(&failWriter{n: 100}); err == nil {
		t.Error("WriteSVG to a failing writer: no error")
	}
}
