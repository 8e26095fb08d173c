package report

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/peerlink/peerlink/simulation"
)

// Report is one HTML page: a title and sections, each with text, tables
// and charts. New fills it from a simulation.Result; Add appends more.
type Report struct {
	Title string
	// Subtitle says what was run, under the title.
	Subtitle string
	Sections []Section
}

// Section is one part of a report, under its own heading.
type Section struct {
	// ID names the section's anchor (#ID); it should be unique in the
	// report and made of letters, digits and dashes.
	ID    string
	Title string
	// Text says what the section shows and how to read it: one
	// paragraph per element.
	Text []string
	// Pre are preformatted blocks, such as a scenario's JSON, shown
	// as they are after the text.
	Pre    []string
	Tables []Table
	Charts []Chart
}

// Table is a table of text cells.
type Table struct {
	Caption string
	Header  []string
	Rows    [][]string
}

// sections builds the report's sections from a result, in order; each
// returns false when the result has nothing for it. A measure the
// harness adds gets its section by one function here.
var sections = []func(*simulation.Result) (Section, bool){
	summarySection,
	connectivitySection,
	gossipSection,
	workloadOverTimeSection,
	selectionSection,
	scoresSection,
	reconnectSection,
	detectionSection,
	faultsSection,
}

// New returns the report of res: a summary table, connectivity over time
// (nodes and links up, peers per node), reconnect times, dead-link
// detection times and the faults applied. It is a function of res alone: the same result gives
// the same page, byte for byte.
func New(res *simulation.Result) *Report {
	r := &Report{
		Title:    "peersim report: " + scenarioName(res),
		Subtitle: fmt.Sprintf("%d nodes, %d edges, %v of virtual time, seed %d, trace hash %s", res.Nodes, res.Edges, res.Duration, res.Seed, res.TraceHash),
	}
	if res.Mode == simulation.ModeLocal {
		r.Subtitle = fmt.Sprintf("%d node processes over TCP on one host, %d edges, %v of real time, seed %d", res.Nodes, res.Edges, res.Duration, res.Seed)
	}
	for _, build := range sections {
		if s, ok := build(res); ok {
			r.Add(s)
		}
	}
	return r
}

// Write writes the report of res (New) as HTML.
func Write(w io.Writer, res *simulation.Result) error { return New(res).WriteHTML(w) }

// Add appends a section.
func (r *Report) Add(s Section) { r.Sections = append(r.Sections, s) }

// css is the page's only style: inline, so that the file stands alone.
const css = `body{font-family:system-ui,sans-serif;max-width:780px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.subtitle{color:#555;margin-top:0}nav ol{padding-left:1.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}caption{text-align:left;font-weight:bold;margin-bottom:.3em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}svg.chart{max-width:100%;height:auto;border:1px solid #eee}
svg .tick{fill:#444}svg .axis-label{fill:#222}
pre{background:#f6f6f6;border:1px solid #e5e5e5;padding:.6em;overflow-x:auto;font-size:.85em}`

// WriteHTML writes the report as one self-contained HTML page: inline
// CSS and SVG, no script, and a content security policy that forbids
// every fetch, so that it opens anywhere, offline, and shows the same.
func (r *Report) WriteHTML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	p("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n")
	p("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	p("<title>%s</title>\n<style>\n%s\n</style>\n</head>\n<body>\n", esc(r.Title), css)
	p("<header>\n<h1>%s</h1>\n", esc(r.Title))
	if r.Subtitle != "" {
		p("<p class=\"subtitle\">%s</p>\n", esc(r.Subtitle))
	}
	p("</header>\n")
	if len(r.Sections) > 1 {
		p("<nav><ol>\n")
		for _, s := range r.Sections {
			p("<li><a href=\"#%s\">%s</a></li>\n", esc(s.ID), esc(s.Title))
		}
		p("</ol></nav>\n")
	}
	for _, s := range r.Sections {
		p("<section id=\"%s\">\n<h2>%s</h2>\n", esc(s.ID), esc(s.Title))
		for _, t := range s.Text {
			p("<p>%s</p>\n", esc(t))
		}
		for _, t := range s.Pre {
			p("<pre>%s</pre>\n", esc(t))
		}
		for _, t := range s.Tables {
			writeTable(bw, t)
		}
		for _, c := range s.Charts {
			p("<figure>\n")
			if err := c.WriteSVG(bw); err != nil {
				return err
			}
			p("</figure>\n")
		}
		p("</section>\n")
	}
	p("</body>\n</html>\n")
	return bw.Flush()
}

func writeTable(w io.Writer, t Table) {
	fmt.Fprint(w, "<table>\n")
	if t.Caption != "" {
		fmt.Fprintf(w, "<caption>%s</caption>\n", esc(t.Caption))
	}
	if len(t.Header) > 0 {
		fmt.Fprint(w, "<thead><tr>")
		for _, h := range t.Header {
			fmt.Fprintf(w, "<th>%s</th>", esc(h))
		}
		fmt.Fprint(w, "</tr></thead>\n")
	}
	fmt.Fprint(w, "<tbody>\n")
	for _, row := range t.Rows {
		fmt.Fprint(w, "<tr>")
		for _, c := range row {
			fmt.Fprintf(w, "<td>%s</td>", esc(c))
		}
		fmt.Fprint(w, "</tr>\n")
	}
	fmt.Fprint(w, "</tbody>\n</table>\n")
}

func scenarioName(res *simulation.Result) string {
	if res.Scenario == "" {
		return "unnamed scenario"
	}
	return res.Scenario
}

// Summary returns the run's main figures as rows of (measure, value):
// the report's first table, and what peersim prints.
func Summary(res *simulation.Result) Table {
	t := Table{Caption: "Summary", Header: []string{"measure", "value"}}
	add := func(k, format string, a ...any) { t.Rows = append(t.Rows, []string{k, fmt.Sprintf(format, a...)}) }
	add("scenario", "%s (seed %d)", scenarioName(res), res.Seed)
	add("network", "%d nodes, %d edges", res.Nodes, res.Edges)
	local := res.Mode == simulation.ModeLocal
	if local {
		add("real time", "%v (%s: node processes over TCP)", res.Duration, res.Mode)
	} else {
		add("virtual time", "%v", res.Duration)
	}
	if res.FullyConnected {
		add("fully connected at", "%s", dur(res.FullyConnectedAt))
	} else {
		add("fully connected at", "never (some edge of the topology never had a link)")
	}
	if n := len(res.Samples); n > 0 {
		last := res.Samples[n-1]
		add("at the end", "%d/%d nodes up, %d/%d edges up (%s), %.1f peers per node (min %d)",
			last.NodesUp, res.Nodes, last.EdgesUp, res.Edges, pct(last.EdgesUp, res.Edges), last.MeanPeers, last.MinPeers)
	}
	add("crashes / restarts", "%d / %d", res.Crashes, res.Restarts)
	add("reconnect after restart", "%s", summary(res.ReconnectAfterRestart))
	add("reconnect after heal", "%s", summary(res.ReconnectAfterHeal))
	add("reconnect after reset", "%s", summary(res.ReconnectAfterReset))
	add("dead-link detection", "%s", summary(res.DeadLinkDetection))
	workloadRows(res, add)
	add("events lost", "%d%s", res.DroppedEvents, map[bool]string{true: " (measures incomplete)", false: ""}[res.DroppedEvents > 0])
	add("memory per node", "%s heap, %s stacks, %.1f goroutines", bytesIEC(res.HeapPerNode), bytesIEC(res.StackPerNode), res.GoroutinesPerNode)
	if res.RSSPerNode > 0 {
		add("peak RSS per node", "%s", bytesIEC(res.RSSPerNode))
	}
	add("CPU per node", "%s", dur(res.CPUPerNode))
	if local {
		add("trace", "%d records (real time: the hash does not repeat)", res.TraceLen)
	} else {
		add("trace", "%d records, hash %s", res.TraceLen, res.TraceHash)
	}
	return t
}

// summary prints a Summary in one cell.
func summary(s simulation.Summary) string {
	if s.Count == 0 && s.Missing == 0 {
		return "none"
	}
	out := fmt.Sprintf("%d: p50 %s, p90 %s, max %s", s.Count, dur(s.P50), dur(s.P90), dur(s.Max))
	if s.Count == 0 {
		out = "0"
	}
	if s.Missing > 0 {
		out += fmt.Sprintf("; %d never completed", s.Missing)
	}
	return out
}

// dur rounds a duration to what a reader compares: milliseconds, or
// microseconds below one.
func dur(d simulation.Duration) string {
	if d.D() >= time.Millisecond {
		return d.D().Round(time.Millisecond).String()
	}
	return d.D().Round(time.Microsecond).String()
}

func pct(a, b int) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(a)/float64(b))
}

func bytesIEC(n int64) string {
	switch {
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 || n <= -1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func secs(d simulation.Duration) float64 { return d.D().Seconds() }

func summarySection(res *simulation.Result) (Section, bool) {
	t := Summary(res)
	t.Caption = "" // the section's heading says it
	s := Section{ID: "summary", Title: "Summary", Tables: []Table{t}}
	if res.DroppedEvents > 0 {
		s.Text = []string{fmt.Sprintf("Warning: the nodes' subscriptions lost %d events; the measures below miss them.", res.DroppedEvents)}
	}
	return s, true
}

// faultMarks returns a mark per fault of the run's trace (none for a
// result read back from JSON, which has no trace).
func faultMarks(res *simulation.Result) []Mark {
	var ms []Mark
	for _, r := range faults(res) {
		ms = append(ms, Mark{X: r.At.Seconds(), Label: fmt.Sprintf("%s at %s, nodes %s", r.Kind, dur(simulation.Duration(r.At)), faultNodes(r))})
	}
	return ms
}

func connectivitySection(res *simulation.Result) (Section, bool) {
	if len(res.Samples) == 0 {
		return Section{}, false
	}
	up := Series{Name: "nodes up (% of nodes)"}
	edges := Series{Name: "edges up (% of edges)"}
	mean := Series{Name: "mean peers per node"}
	least := Series{Name: "fewest peers of a node"}
	for _, s := range res.Samples {
		t := secs(s.At)
		up.Points = append(up.Points, Point{t, 100 * float64(s.NodesUp) / float64(max(1, res.Nodes))})
		edges.Points = append(edges.Points, Point{t, 100 * float64(s.EdgesUp) / float64(max(1, res.Edges))})
		mean.Points = append(mean.Points, Point{t, s.MeanPeers})
		least.Points = append(least.Points, Point{t, float64(s.MinPeers)})
	}
	marks := faultMarks(res)
	return Section{
		ID:    "connectivity",
		Title: "Connectivity over time",
		Text: []string{
			"Sampled from the nodes' own connection events. An edge is up when both of its ends report a link to the other; dashed lines mark the faults (hover for which).",
		},
		Charts: []Chart{
			&LineChart{Title: "Nodes and links up over time", XLabel: "virtual time (s)", YLabel: "% up", Step: true, Series: []Series{up, edges}, Marks: marks},
			&LineChart{Title: "Connected peers per node over time", XLabel: "virtual time (s)", YLabel: "peers", Step: true, Series: []Series{mean, least}, Marks: marks},
		},
	}, true
}

// causesOf returns the known causes, then any other cause of items in
// order of appearance, so that a cause the harness adds is not lost.
func causesOf[T any](known []string, items []T, cause func(T) string) []string {
	names := slices.Clone(known)
	for _, it := range items {
		if c := cause(it); !slices.Contains(names, c) {
			names = append(names, c)
		}
	}
	return names
}

// byCause calls add with each cause, in the order of causes, and the
// values of the items of that cause, leaving out causes without any.
func byCause[T, V any](items []T, causes []string, cause func(T) string, value func(T) V, add func(cause string, vs []V)) {
	for _, c := range causes {
		var vs []V
		for _, it := range items {
			if cause(it) == c {
				vs = append(vs, value(it))
			}
		}
		if len(vs) > 0 {
			add(c, vs)
		}
	}
}

// cdfAndScatter returns, for items grouped by cause, the CDF of how
// long each took and the scatter of how long against when.
func cdfAndScatter[T any](items []T, causes []string, cause func(T) string, at, after func(T) simulation.Duration,
	cdfTitle, cdfX, scatterTitle, scatterX, scatterY string) (*LineChart, *Scatter) {
	var sets []Samples
	byCause(items, causes, cause, func(it T) float64 { return secs(after(it)) }, func(c string, vs []float64) {
		sets = append(sets, Samples{Name: c, Values: vs})
	})
	sc := &Scatter{Title: scatterTitle, XLabel: scatterX, YLabel: scatterY}
	byCause(items, causes, cause, func(it T) Point { return Point{secs(at(it)), secs(after(it))} }, func(c string, ps []Point) {
		sc.Series = append(sc.Series, Series{Name: c, Points: ps})
	})
	return CDF(cdfTitle, cdfX, sets...), sc
}

// percentileBars compares p50, p90 and max across the named summaries
// that have cases.
func percentileBars(title string, names []string, sums []simulation.Summary) *Bars {
	b := &Bars{Title: title, YLabel: "seconds", Series: []BarSeries{{Name: "p50"}, {Name: "p90"}, {Name: "max"}}}
	for k, s := range sums {
		if s.Count == 0 {
			continue
		}
		b.Groups = append(b.Groups, fmt.Sprintf("%s (%d)", names[k], s.Count))
		for i, v := range []simulation.Duration{s.P50, s.P90, s.Max} {
			b.Series[i].Values = append(b.Series[i].Values, secs(v))
		}
	}
	return b
}

var reconnectCauses = []string{"restart", "heal", "reset"}

func reconnectSection(res *simulation.Result) (Section, bool) {
	s := Section{
		ID:    "reconnects",
		Title: "Reconnect times",
		Text: []string{
			"How long each topology edge took to have a fresh link, both ends connected, after the fault that cut it ended: a node restarted, a partition healed, a link was reset.",
		},
	}
	sums := []simulation.Summary{res.ReconnectAfterRestart, res.ReconnectAfterHeal, res.ReconnectAfterReset}
	if missing := sums[0].Missing + sums[1].Missing + sums[2].Missing; missing > 0 {
		s.Text = append(s.Text, fmt.Sprintf("%d edges had not reconnected by the end of the run, with both ends up.", missing))
	}
	if len(res.Reconnects) == 0 {
		s.Text = append(s.Text, "No reconnects in this run: no fault cut a link and ended.")
		return s, true
	}
	cause := func(r simulation.Reconnect) string { return r.Cause }
	cdf, scatter := cdfAndScatter(res.Reconnects, causesOf(reconnectCauses, res.Reconnects, cause), cause,
		func(r simulation.Reconnect) simulation.Duration { return r.At }, func(r simulation.Reconnect) simulation.Duration { return r.After },
		"Reconnect time by cause (CDF)", "seconds after the fault ended",
		"Reconnect time against when the fault ended", "virtual time of the fault's end (s)", "seconds to reconnect")
	s.Charts = []Chart{cdf, percentileBars("Reconnect time percentiles by cause", reconnectCauses, sums), scatter}
	return s, true
}

var detectionCauses = []string{"blackhole", "partition", "poweroff"}

func detectionSection(res *simulation.Result) (Section, bool) {
	s := Section{
		ID:    "detection",
		Title: "Dead-link detection",
		Text: []string{
			"How long a node took to declare a link dead after it went silent with its socket still open (a black hole, a partition, a peer's power cut): only its health checks can tell.",
		},
	}
	if res.DeadLinkDetection.Missing > 0 {
		s.Text = append(s.Text, fmt.Sprintf("%d silent links were never declared dead by the end of the run.", res.DeadLinkDetection.Missing))
	}
	if len(res.Detections) == 0 {
		s.Text = append(s.Text, "No detections in this run: no link went silent.")
		return s, true
	}
	cause := func(d simulation.Detection) string { return d.Cause }
	cdf, scatter := cdfAndScatter(res.Detections, causesOf(detectionCauses, res.Detections, cause), cause,
		func(d simulation.Detection) simulation.Duration { return d.At }, func(d simulation.Detection) simulation.Duration { return d.After },
		"Dead-link detection time by cause (CDF)", "seconds after the link went silent",
		"Detection time against when the link went silent", "virtual time the link went silent (s)", "seconds to detect")
	s.Charts = []Chart{cdf, scatter}
	s.Tables = []Table{firstRows("Detections", []string{"cause", "node", "peer", "silent at", "detected after"}, res.Detections,
		func(d simulation.Detection) []string {
			return []string{d.Cause, fmt.Sprint(d.Node), fmt.Sprint(d.Peer), dur(d.At), dur(d.After)}
		})}
	return s, true
}

// maxRows bounds a table of cases; the charts show them all.
const maxRows = 40

// firstRows is a table of the first maxRows items, its caption saying
// how many it leaves out.
func firstRows[T any](caption string, header []string, items []T, row func(T) []string) Table {
	t := Table{Caption: caption, Header: header}
	for _, it := range items[:min(len(items), maxRows)] {
		t.Rows = append(t.Rows, row(it))
	}
	if len(items) > maxRows {
		t.Caption = fmt.Sprintf("%s (first %d of %d)", caption, maxRows, len(items))
	}
	return t
}

// faults returns the faults of the run's trace, in time order.
func faults(res *simulation.Result) []simulation.Record {
	var fs []simulation.Record
	for _, r := range res.Trace() {
		if r.Kind != simulation.KindConnected && r.Kind != simulation.KindDisconnected {
			fs = append(fs, r)
		}
	}
	return fs
}

// faultsSection lists the faults the harness applied, from the trace
// (a result read back from JSON has none).
func faultsSection(res *simulation.Result) (Section, bool) {
	fs := faults(res)
	if len(fs) == 0 {
		return Section{}, false
	}
	return Section{
		ID:    "faults",
		Title: "Faults",
		Text:  []string{"The faults the harness applied, as the scenario scheduled them (churn's crashes and restarts drawn from the seed)."},
		Tables: []Table{firstRows("Faults applied", []string{"at", "fault", "nodes"}, fs, func(r simulation.Record) []string {
			return []string{dur(simulation.Duration(r.At)), r.Kind.String(), faultNodes(r)}
		})},
	}, true
}

// faultNodes says which nodes a fault hit.
func faultNodes(r simulation.Record) string {
	switch {
	case r.Node >= 0 && r.Peer >= 0:
		return fmt.Sprintf("%d–%d", r.Node, r.Peer)
	case r.Node >= 0:
		return fmt.Sprint(r.Node)
	}
	return "all"
}
