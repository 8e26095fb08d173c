package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing/synctest"
	"text/tabwriter"
	"time"

	"github.com/peerlink/peerlink/simulation"
	"github.com/peerlink/peerlink/simulation/report"
)

// run is the command: it parses args, runs the scenario inside bubble,
// and writes the results to stdout (the table, or JSON with -json), the
// progress and errors to stderr, the report to its file. It returns the
// exit code.
func run(args []string, stdout, stderr io.Writer, bubble bubbleFunc) int {
	opts, code := checkArgs(args, stderr)
	if code >= 0 {
		return code
	}
	var reportFile *os.File
	if opts.report != "" {
		// Created before the run, so that a path that cannot be
		// written costs no run.
		f, err := os.Create(opts.report)
		if err != nil {
			return fail(stderr, exitUsage, fmt.Errorf("-report: %w", err))
		}
		reportFile = f
	}
	discard := func() {
		if reportFile != nil {
			reportFile.Close()
			os.Remove(reportFile.Name())
		}
	}

	g, _ := opts.sc.Graph() // checked by parseArgs
	p := &progress{nodes: opts.sc.Nodes, edges: len(g.Edges()), duration: opts.sc.Duration.D()}
	fmt.Fprintf(stderr, "peersim: %s\n", describe(opts.sc))
	stop := p.show(stderr, isTerminal(stderr))
	res, err := simulate(opts.sc, p, bubble)
	stop()
	if err != nil {
		discard()
		return fail(stderr, exitRun, err)
	}
	if res.DroppedEvents > 0 {
		fmt.Fprintf(stderr, "peersim: warning: %d connection events were lost; the measures miss them\n", res.DroppedEvents)
	}

	return emit(stdout, stderr, res, p.wall(), opts.json, reportFile, scenarioSection(opts.sc))
}

// emit writes the results of a run: the summary table, or JSON with
// asJSON, on stdout; the report with a last section extra to
// reportFile, if not nil (closed, and removed on failure). It returns
// the exit code.
func emit(stdout, stderr io.Writer, res *simulation.Result, wall time.Duration, asJSON bool, reportFile *os.File, extra report.Section) int {
	var err error
	if asJSON {
		err = json.NewEncoder(stdout).Encode(jsonResult{Result: res, WallTime: simulation.Duration(wall)})
	} else {
		err = printSummary(stdout, res, wall)
	}
	if err != nil {
		if reportFile != nil {
			reportFile.Close()
			os.Remove(reportFile.Name())
		}
		return fail(stderr, exitRun, fmt.Errorf("writing the results: %w", err))
	}
	if reportFile != nil {
		r := report.New(res)
		r.Add(extra)
		err := r.WriteHTML(reportFile)
		if err = errors.Join(err, reportFile.Close()); err != nil {
			os.Remove(reportFile.Name())
			return fail(stderr, exitRun, fmt.Errorf("-report: %w", err))
		}
		fmt.Fprintf(stderr, "peersim: report written to %s\n", reportFile.Name())
	}
	return exitOK
}

// jsonResult is what -json prints: the Result's fields, and the wall
// time the run took (which, unlike the rest, varies from run to run).
type jsonResult struct {
	*simulation.Result
	WallTime simulation.Duration `json:"wall_time"`
}

// simulate runs sc in a synctest bubble, where its clock is virtual and
// its trace repeats from the seed, feeding p as it goes.
func simulate(sc simulation.Scenario, p *progress, bubble bubbleFunc) (*simulation.Result, error) {
	// yamux keeps a process-wide pool of timers; a timer made in one
	// bubble must not be used outside it: empty the pool on both sides
	// (see simulation's doc).
	runtime.GC()
	runtime.GC()
	defer func() {
		runtime.GC()
		runtime.GC()
	}()
	var res *simulation.Result
	var err error
	bubble(func() {
		var s *simulation.Sim
		s, err = simulation.Start(sc, simulation.Options{Settle: synctest.Wait, Progress: p.note})
		if err != nil {
			return
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { p.watch(s, done) })
		// A context from outside the bubble would not block durably
		// and would stop its clock: the run is bounded by its Duration.
		res, err = s.Run(context.Background())
		close(done)
		wg.Wait()
		err = errors.Join(err, s.Close())
	})
	return res, err
}

// progress is the run's state as the progress line shows it. watch
// writes it from inside the bubble and show reads it from outside, so
// they share only atomics: a goroutine outside a bubble must not touch
// the bubble's channels, and inside it time.Now is virtual.
type progress struct {
	nodes, edges int
	duration     time.Duration

	virtual atomic.Int64 // virtual time elapsed, ns
	nodesUp atomic.Int64
	links   atomic.Int64 // open links, counted once per link
	wallNS  atomic.Int64 // wall time of the run, once it ended
	start   time.Time

	// The workload's progress, from simulation.Options.Progress.
	published, requests, requestErrors atomic.Int64
	delivery                           atomic.Uint64 // float64 bits
}

// note takes the workload's progress (simulation.Options.Progress).
func (p *progress) note(pr simulation.Progress) {
	p.published.Store(int64(pr.Published))
	p.delivery.Store(math.Float64bits(pr.Delivery))
	p.requests.Store(int64(pr.Requests))
	p.requestErrors.Store(int64(pr.RequestErrors))
}

// watchEvery is the virtual time between two readings of the nodes:
// what the progress line can show, at a cost of one pass over the nodes.
const watchEvery = time.Second

// watch reads the nodes every watchEvery of virtual time until done.
func (p *progress) watch(s *simulation.Sim, done <-chan struct{}) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		up, conns := 0, 0
		for i := range p.nodes {
			if m := s.Manager(i); m != nil {
				up++
				conns += m.ConnectionCount()
			}
		}
		p.nodesUp.Store(int64(up))
		p.links.Store(int64(conns / 2))
		p.virtual.Store(int64(s.Elapsed()))
		select {
		case <-t.C:
		case <-done:
			p.virtual.Store(int64(p.duration))
			return
		}
	}
}

// line is the progress line.
func (p *progress) line(wall time.Duration) string {
	s := fmt.Sprintf("peersim: %6.1fs wall  %v/%v virtual  %d/%d nodes up  %d links up (%d edges)",
		wall.Seconds(), time.Duration(p.virtual.Load()).Round(time.Second), p.duration,
		p.nodesUp.Load(), p.nodes, p.links.Load(), p.edges)
	if n := p.published.Load(); n > 0 {
		s += fmt.Sprintf("  %d messages, %.1f %% delivered", n, 100*math.Float64frombits(p.delivery.Load()))
	}
	if n := p.requests.Load(); n > 0 {
		s += fmt.Sprintf("  %d requests (%d failed)", n, p.requestErrors.Load())
	}
	return s
}

// Progress line refresh, in wall time: often on a terminal, where the
// line is rewritten in place; seldom elsewhere, where each is a new line
// in a log.
const (
	refreshTerminal = 200 * time.Millisecond
	refreshLog      = 5 * time.Second
)

// show prints the progress line to w until the returned stop is called,
// then the final line. It uses the wall clock: it runs outside the
// bubble.
func (p *progress) show(w io.Writer, terminal bool) (stop func()) {
	p.start = time.Now()
	every, end := refreshLog, "\n"
	if terminal {
		every, end = refreshTerminal, "\r"
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprint(w, p.line(time.Since(p.start))+end)
			case <-done:
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		wall := time.Since(p.start)
		p.wallNS.Store(int64(wall))
		if terminal {
			fmt.Fprint(w, "\x1b[K") // clear what a longer line left
		}
		fmt.Fprintln(w, p.line(wall))
	}
}

func (p *progress) wall() time.Duration { return time.Duration(p.wallNS.Load()) }

// isTerminal reports whether w is a character device, such as a
// terminal: where a line can be rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printSummary prints the summary table.
func printSummary(w io.Writer, res *simulation.Result, wall time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	t := report.Summary(res)
	for _, row := range t.Rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	fmt.Fprintf(tw, "wall time\t%v (%.0f× real time)\n", wall.Round(time.Millisecond), res.Duration.D().Seconds()/max(wall.Seconds(), 1e-9))
	return tw.Flush()
}

// scenarioSection is the report's last section: the scenario as run
// (the flags' overrides applied) as JSON. Saved to a file, it runs again
// with -scenario and gives the same trace hash.
func scenarioSection(sc simulation.Scenario) report.Section {
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		b = []byte(err.Error())
	}
	return report.Section{
		ID:    "scenario",
		Title: "Scenario",
		Text:  []string{"The scenario as run. Saved as a file, peersim -scenario FILE runs it again: the same seed gives the same run and the same trace hash."},
		Pre:   []string{string(b)},
	}
}
