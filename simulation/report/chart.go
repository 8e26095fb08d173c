package report

import (
	"bufio"
	"cmp"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Point is one datum of a chart.
type Point struct{ X, Y float64 }

// Series is a named list of points: one line of a LineChart, one set of
// dots of a Scatter. Points that are not finite are left out.
type Series struct {
	Name   string
	Points []Point
}

// Mark is a vertical line across a chart at X, such as the instant of a
// fault; Label shows when the pointer rests on it.
type Mark struct {
	X     float64
	Label string
}

// Chart is one figure of a report: it writes itself as an inline SVG
// element whose <title> is its Title, with a <g class="series"
// data-series="NAME"> per series, so that a reader (a screen reader, a
// test) finds each chart and each series by name.
type Chart interface {
	ChartTitle() string
	WriteSVG(w io.Writer) error
}

// LineChart draws each series as a polyline over a shared x axis.
type LineChart struct {
	Title, XLabel, YLabel string
	Series                []Series
	// Step draws a staircase: each value holds until the next point's
	// X, as a count sampled over time or a CDF does; otherwise the
	// points are joined straight.
	Step bool
	// Marks are drawn behind the series.
	Marks []Mark
}

// Scatter draws each series as dots.
type Scatter struct {
	Title, XLabel, YLabel string
	Series                []Series
}

// Bars draws grouped bars: for each of Groups (along the x axis), one
// bar per series, side by side. A value that is not finite leaves its
// bar out.
type Bars struct {
	Title, YLabel string
	Groups        []string
	Series        []BarSeries
}

// BarSeries is one bar per group of a Bars chart, in Groups' order.
type BarSeries struct {
	Name   string
	Values []float64
}

// Samples is a named set of observations, such as one cause's reconnect
// times, for CDF.
type Samples struct {
	Name   string
	Values []float64
}

// CDF returns a chart of the empirical cumulative distribution of each
// set of samples: for each x, the percentage of the set's values at or
// below x, drawn as a staircase that rises 100/n at each of the n values.
// Sets without a finite value are left out; values need not be sorted.
func CDF(title, xLabel string, sets ...Samples) *LineChart {
	c := &LineChart{Title: title, XLabel: xLabel, YLabel: "% of cases at or below", Step: true}
	for _, s := range sets {
		vs := slices.DeleteFunc(slices.Clone(s.Values), func(v float64) bool { return !finite(v) })
		if len(vs) == 0 {
			continue
		}
		slices.Sort(vs)
		pts := make([]Point, 0, len(vs)+1)
		pts = append(pts, Point{vs[0], 0})
		for i, v := range vs {
			// Ties make one step, up to the share of the last of them.
			if i+1 < len(vs) && vs[i+1] == v {
				continue
			}
			pts = append(pts, Point{v, 100 * float64(i+1) / float64(len(vs))})
		}
		c.Series = append(c.Series, Series{Name: s.Name, Points: pts})
	}
	return c
}

// Geometry of every chart, in SVG user units (CSS pixels at scale 1).
const (
	chartW      = 720
	chartH      = 340
	marginLeft  = 64
	marginRight = 20
	titleY      = 22
	legendY     = 44
	plotTop     = 62
	plotBottom  = chartH - 52
	ticks       = 8
	maxBarWidth = 64
)

// palette is Okabe and Ito's colour-blind-safe set, yellow last (it is
// faint on white).
var palette = []string{"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"}

// Color returns the colour of the i-th series of a chart.
func Color(i int) string { return palette[i%len(palette)] }

// ChartTitle implements Chart.
func (c *LineChart) ChartTitle() string { return c.Title }

// ChartTitle implements Chart.
func (c *Scatter) ChartTitle() string { return c.Title }

// ChartTitle implements Chart.
func (c *Bars) ChartTitle() string { return c.Title }

// WriteSVG implements Chart.
func (c *LineChart) WriteSVG(w io.Writer) error {
	return drawXY(w, "line", c.Title, c.XLabel, c.YLabel, c.Series, c.Marks, func(s *svg, i int, pts []Point, x, y axis) {
		if len(pts) == 1 {
			// A lone point would draw nothing as a path.
			s.printf(`<circle class="dot" cx="%s" cy="%s" r="3" fill="%s"/>`, num(x.at(pts[0].X)), num(y.at(pts[0].Y)), Color(i))
			return
		}
		var d strings.Builder
		for k, p := range pts {
			switch {
			case k == 0:
				fmt.Fprintf(&d, "M%s %s", num(x.at(p.X)), num(y.at(p.Y)))
			case c.Step:
				fmt.Fprintf(&d, "H%sV%s", num(x.at(p.X)), num(y.at(p.Y)))
			default:
				fmt.Fprintf(&d, "L%s %s", num(x.at(p.X)), num(y.at(p.Y)))
			}
		}
		if len(pts) > 1 {
			s.printf(`<path class="line" d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`, d.String(), Color(i))
		}
	})
}

// WriteSVG implements Chart.
func (c *Scatter) WriteSVG(w io.Writer) error {
	return drawXY(w, "scatter", c.Title, c.XLabel, c.YLabel, c.Series, nil, func(s *svg, i int, pts []Point, x, y axis) {
		for _, p := range pts {
			s.printf(`<circle class="dot" cx="%s" cy="%s" r="3.5" fill="%s" stroke="#fff" stroke-width="0.5"/>`, num(x.at(p.X)), num(y.at(p.Y)), Color(i))
		}
	})
}

// drawXY writes a chart of series over two value axes, with marks:
// drawSeries draws each series' finite points inside its group.
func drawXY(w io.Writer, kind, title, xLabel, yLabel string, series []Series, marks []Mark, drawSeries func(s *svg, i int, pts []Point, x, y axis)) error {
	xs, ys := extent(series)
	for _, m := range marks {
		if finite(m.X) {
			xs = append(xs, m.X)
		}
	}
	return draw(w, kind, title, names(series), func(s *svg) {
		if len(ys) == 0 {
			s.empty()
			return
		}
		x, y := newXAxis(xs), newAxis(ys, plotBottom, plotTop)
		s.axes(x, y, xLabel, yLabel)
		s.marks(marks, x)
		for i, se := range series {
			pts := finitePoints(se.Points)
			s.openSeries(i, se.Name, len(pts))
			drawSeries(s, i, pts, x, y)
			s.closeSeries()
		}
	})
}

// WriteSVG implements Chart.
func (c *Bars) WriteSVG(w io.Writer) error {
	var ys []float64
	for _, se := range c.Series {
		for k, v := range se.Values {
			if k < len(c.Groups) && finite(v) {
				ys = append(ys, v)
			}
		}
	}
	sn := make([]string, len(c.Series))
	for i, se := range c.Series {
		sn[i] = se.Name
	}
	return draw(w, "bars", c.Title, sn, func(s *svg) {
		if len(ys) == 0 {
			s.empty()
			return
		}
		y := newAxis(ys, plotBottom, plotTop)
		s.yAxis(y, c.YLabel)
		band := (plotRight() - plotLeft()) / float64(len(c.Groups))
		for g, name := range c.Groups {
			s.printf(`<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`, num(plotLeft()+band*(float64(g)+0.5)), plotBottom+18, esc(name))
		}
		s.printf(`<line class="axis" x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333"/>`, num(plotLeft()), plotBottom, num(plotRight()), plotBottom)
		// Bars fill 80 % of their group's band, side by side, up to a
		// width that still reads as a bar.
		bw := min(maxBarWidth, band*0.8/float64(max(1, len(c.Series))))
		pad := (band - bw*float64(len(c.Series))) / 2
		for i, se := range c.Series {
			n := 0
			for g, v := range se.Values {
				if g < len(c.Groups) && finite(v) {
					n++
				}
			}
			s.openSeries(i, se.Name, n)
			for g, v := range se.Values {
				if g >= len(c.Groups) || !finite(v) {
					continue
				}
				x0 := plotLeft() + band*float64(g) + pad + bw*float64(i)
				top, base := y.at(v), y.at(max(0, y.lo))
				if top > base {
					top, base = base, top
				}
				s.printf(`<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s, %s: %s</title></rect>`,
					num(x0), num(top), num(bw), num(base-top), Color(i), esc(c.Groups[g]), esc(se.Name), esc(label(v)))
			}
			s.closeSeries()
		}
	})
}

func plotLeft() float64  { return marginLeft }
func plotRight() float64 { return chartW - marginRight }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func finitePoints(ps []Point) []Point {
	return slices.DeleteFunc(slices.Clone(ps), func(p Point) bool { return !finite(p.X) || !finite(p.Y) })
}

func names(ss []Series) []string {
	n := make([]string, len(ss))
	for i, s := range ss {
		n[i] = s.Name
	}
	return n
}

// extent returns the finite coordinates of every point.
func extent(ss []Series) (xs, ys []float64) {
	for _, s := range ss {
		for _, p := range finitePoints(s.Points) {
			xs, ys = append(xs, p.X), append(ys, p.Y)
		}
	}
	return xs, ys
}

// axis maps data values onto a pixel range, over a span widened to
// round tick values.
type axis struct {
	lo, hi, step float64
	p0, p1       float64 // pixels of lo and hi
}

// newAxis fits values (at least one) into [p0, p1]. The span includes
// 0, so that bars and counts are read against their true zero and two
// charts of one measure compare at a glance.
func newAxis(values []float64, p0, p1 float64) axis {
	lo, hi := min(0, slices.Min(values)), max(0, slices.Max(values))
	if lo == hi {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / (ticks - 1))
	return axis{lo: roundTo(math.Floor(lo/step)*step, step), hi: roundTo(math.Ceil(hi/step)*step, step), step: step, p0: p0, p1: p1}
}

// newXAxis is the x axis of values: its span reaches 2 % past the
// largest, so that what lies there (a CDF's last step, a dot) does not
// sit on the plot's right edge, where it is hard to see.
func newXAxis(values []float64) axis {
	hi := slices.Max(values)
	span := hi - min(0, slices.Min(values))
	return newAxis(append(slices.Clone(values), hi+span/50), plotLeft(), plotRight())
}

// niceStep rounds a raw tick spacing up to 1, 2, 2.5 or 5 times a power
// of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func (a axis) at(v float64) float64 { return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0) }

// ticks returns the tick values from lo to hi.
func (a axis) ticks() []float64 {
	var ts []float64
	for k := 0; ; k++ {
		v := a.lo + float64(k)*a.step
		if v > a.hi+a.step*1e-9 {
			return ts
		}
		ts = append(ts, roundTo(v, a.step))
	}
}

// roundTo removes the float error of lo + k·step at the step's precision.
func roundTo(v, step float64) float64 {
	d := decimals(step)
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', d, 64), 64)
	return r
}

// decimals is how many decimals print a multiple of step exactly.
func decimals(step float64) int {
	for d := range 15 {
		v := step * math.Pow(10, float64(d))
		if math.Abs(v-math.Round(v)) < 1e-6*v {
			return d
		}
	}
	return 15
}

func (a axis) label(v float64) string { return strconv.FormatFloat(v, 'f', decimals(a.step), 64) }

// num prints a pixel coordinate; one decimal is below what a screen
// shows and keeps the file small and its bytes repeatable.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// label prints a data value for a tooltip.
func label(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func esc(s string) string { return html.EscapeString(s) }

// svg writes one chart; the first write error sticks and is returned by
// draw.
type svg struct {
	w   *bufio.Writer
	err error
}

func (s *svg) printf(format string, a ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, a...)
	}
}

// draw writes the frame every chart shares (title, legend) around body.
func draw(w io.Writer, kind, title string, series []string, body func(*svg)) error {
	s := &svg{w: bufio.NewWriter(w)}
	s.printf(`<svg class="chart chart-%s" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" font-family="sans-serif" font-size="12">`,
		kind, chartW, chartH, chartW, chartH)
	s.printf(`<title>%s</title>`, esc(title))
	s.printf(`<rect class="bg" width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	s.printf(`<text class="chart-title" x="%d" y="%d" font-size="15" font-weight="bold">%s</text>`, marginLeft, titleY, esc(title))
	s.legend(series)
	body(s)
	s.printf("</svg>\n")
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}

// legend writes one swatch and name per series, in rows.
func (s *svg) legend(series []string) {
	if len(series) == 0 {
		return
	}
	s.printf(`<g class="legend">`)
	x, y := float64(marginLeft), float64(legendY)
	for i, name := range series {
		// 7 units per character is a sans-serif 12 px average.
		w := 22 + 7*float64(len([]rune(name))) + 18
		if x+w > plotRight() && x > marginLeft {
			x, y = marginLeft, y+16
		}
		s.printf(`<rect x="%s" y="%s" width="14" height="10" fill="%s"/><text x="%s" y="%s">%s</text>`,
			num(x), num(y-9), Color(i), num(x+20), num(y), esc(name))
		x += w
	}
	s.printf(`</g>`)
}

func (s *svg) empty() {
	s.printf(`<text class="empty" x="%d" y="%d" text-anchor="middle" fill="#666">no data</text>`, chartW/2, (plotTop+plotBottom)/2)
}

func (s *svg) openSeries(i int, name string, points int) {
	s.printf(`<g class="series" data-series="%s" data-points="%d">`, esc(name), points)
}

func (s *svg) closeSeries() { s.printf(`</g>`) }

// axes writes both axes with their grid lines, ticks and labels.
func (s *svg) axes(x, y axis, xLabel, yLabel string) {
	s.yAxis(y, yLabel)
	s.printf(`<g class="axis x-axis">`)
	for _, t := range x.ticks() {
		px := num(x.at(t))
		s.printf(`<line class="grid" x1="%s" y1="%d" x2="%s" y2="%d" stroke="#e5e5e5"/>`, px, plotTop, px, plotBottom)
		s.printf(`<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`, px, plotBottom+16, x.label(t))
	}
	s.printf(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333"/>`, num(plotLeft()), plotBottom, num(plotRight()), plotBottom)
	s.printf(`<text class="axis-label" x="%s" y="%d" text-anchor="middle">%s</text>`, num((plotLeft()+plotRight())/2), chartH-12, esc(xLabel))
	s.printf(`</g>`)
}

func (s *svg) yAxis(y axis, yLabel string) {
	s.printf(`<g class="axis y-axis">`)
	for _, t := range y.ticks() {
		py := num(y.at(t))
		s.printf(`<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e5e5e5"/>`, num(plotLeft()), py, num(plotRight()), py)
		s.printf(`<text class="tick" x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, marginLeft-6, py, y.label(t))
	}
	s.printf(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333"/>`, num(plotLeft()), plotTop, num(plotLeft()), plotBottom)
	s.printf(`<text class="axis-label" transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`, (plotTop+plotBottom)/2, esc(yLabel))
	s.printf(`</g>`)
}

// marks writes the vertical marks, at most one per pixel column (a
// second mark on the same pixel adds nothing to see but bytes), each
// with its labels as a tooltip.
func (s *svg) marks(ms []Mark, x axis) {
	if len(ms) == 0 {
		return
	}
	ms = slices.DeleteFunc(slices.Clone(ms), func(m Mark) bool { return !finite(m.X) })
	slices.SortStableFunc(ms, func(a, b Mark) int { return cmp.Compare(a.X, b.X) })
	s.printf(`<g class="marks">`)
	for k := 0; k < len(ms); {
		px := num(x.at(ms[k].X))
		var labels []string
		for ; k < len(ms) && num(x.at(ms[k].X)) == px; k++ {
			labels = append(labels, ms[k].Label)
		}
		s.printf(`<line class="mark" x1="%s" y1="%d" x2="%s" y2="%d" stroke="#999" stroke-dasharray="3 3"><title>%s</title></line>`,
			px, plotTop, px, plotBottom, esc(strings.Join(labels, "; ")))
	}
	s.printf(`</g>`)
}
