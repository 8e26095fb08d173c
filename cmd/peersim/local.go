package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/simulation"
	"github.com/peerlink/peerlink/simulation/report"
)

// localOptions is what peersim local's command line asks for.
type localOptions struct {
	sc     simulation.Scenario // nodes, degree, seed, duration, workload: validated
	json   bool
	report string
	keep   string // directory to keep the configs and results in, "" for none
}

// Figures of peersim local.
const (
	defaultLocalNodes    = 10
	defaultLocalDuration = 20 * time.Second
	defaultLocalSeed     = 1
	// maxLocalNodes bounds -nodes: each node is a process of some 20 MB.
	maxLocalNodes = 256
	// localStartup is how long after launching the processes the run
	// starts, plus localStartupPerNode per node: time to exec and
	// listen, so that every node listens when the first dials.
	localStartup        = time.Second
	localStartupPerNode = 20 * time.Millisecond
	// localKillGrace is how long past the run's end a node may take to
	// shut down and write its results before it is killed.
	localKillGrace = 15 * time.Second
	// localAttempts bounds the launches: a port picked for a node may be
	// taken by the time it listens (it exits with exitAddrInUse), and the
	// run is launched again on other ports.
	localAttempts = 3
)

// defaultLocalWorkload is peersim local's workload without -scenario:
// gossip and requests, from 1.5 s (the links are up: a persistent
// peer's first dial waits up to 1 s) to a fifth of the run before its
// end (1 to 5 s, for the last messages to spread).
func defaultLocalWorkload(d time.Duration) *simulation.WorkloadSpec {
	settle := min(max(d/5, time.Second), 5*time.Second)
	return &simulation.WorkloadSpec{
		Gossip:   &simulation.GossipSpec{Rate: 0.5, Start: simulation.Duration(1500 * time.Millisecond), Settle: simulation.Duration(settle)},
		Requests: &simulation.RequestSpec{Rate: 2, Start: simulation.Duration(1500 * time.Millisecond)},
	}
}

// parseLocalArgs parses peersim local's command line and checks all it
// can before any process starts. Its errors are *usageError.
func parseLocalArgs(args []string, stderr io.Writer) (localOptions, error) {
	fs := newFlagSet("peersim local", stderr, func(w io.Writer) {
		fmt.Fprint(w, "Usage: peersim local [flags]\n\n"+
			"Starts N processes of peersim node on 127.0.0.1, real TCP and TLS 1.3, wired\n"+
			"as a random regular graph, runs their workload in real time and gathers their\n"+
			"results into the summary table (or -json, -report) of a simulated run. Each\n"+
			"node's stderr is shown prefixed with its index.\n")
	})
	nodes := fs.Int("nodes", defaultLocalNodes, "number of node `processes`")
	degree := fs.Int("degree", simulation.DefaultDegree, "degree of the random regular graph (capped to nodes−1 when not given)")
	duration := fs.Duration("duration", defaultLocalDuration, "how long the nodes run, in real time")
	seed := fs.Uint64("seed", defaultLocalSeed, "seed of the graph, the identities and the workloads' draws")
	scenarioFile := fs.String("scenario", "", "take the workload of this scenario JSON `file` (its faults and links are the simulator's, and ignored)")
	jsonOut := fs.Bool("json", false, "print the results as JSON on stdout instead of the table")
	report := fs.String("report", "", "write a self-contained HTML report with charts to this `file`")
	keep := fs.String("keep", "", "keep the nodes' configs and results in this `directory` (created if missing) rather than a temporary one")
	usage := func(format string, a ...any) (localOptions, error) {
		return localOptions{}, &usageError{err: fmt.Errorf(format, a...)}
	}
	if err := parseFlags(fs, args); err != nil {
		return localOptions{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *nodes < 2 || *nodes > maxLocalNodes:
		return usage("local: -nodes is %d, want 2 to %d", *nodes, maxLocalNodes)
	case set["degree"] && (*degree < 1 || *degree >= *nodes):
		return usage("local: -degree is %d, want 1 to nodes−1 (%d)", *degree, *nodes-1)
	case *duration <= 0 || *duration > 24*time.Hour:
		return usage("local: -duration is %v, want a positive duration up to 24h, such as 20s", *duration)
	}
	if !set["degree"] {
		*degree = min(*degree, *nodes-1)
	}
	sc := simulation.Scenario{
		Name: fmt.Sprintf("local-%d", *nodes), Nodes: *nodes, Topology: simulation.TopologyRandomRegular, Degree: *degree,
		Duration: simulation.Duration(*duration), Seed: *seed, Workload: defaultLocalWorkload(*duration),
	}
	if set["scenario"] {
		f, err := os.Open(*scenarioFile)
		if err != nil {
			return usage("local: -scenario: %w", err)
		}
		file, err := simulation.DecodeScenario(f)
		f.Close()
		if err != nil {
			return usage("local: -scenario %s: %w", *scenarioFile, err)
		}
		if file.Workload == nil {
			return usage("local: -scenario %s: has no workload", *scenarioFile)
		}
		sc.Workload = file.Workload
		if file.Name != "" {
			sc.Name = "local-" + file.Name
		}
	}
	if err := sc.Validate(); err != nil {
		return usage("local: workload: %w", err)
	}
	// What a node refuses of a workload (the simulator's attacks), said
	// before any process starts.
	probe := simulation.NodeConfig{Nodes: sc.Nodes, Listen: "127.0.0.1:0", Start: time.Now(), Duration: sc.Duration, Workload: sc.Workload}
	if err := probe.Validate(); err != nil {
		return usage("local: -scenario %s: %w", *scenarioFile, err)
	}
	if g := sc.Workload.Gossip; g != nil && sc.Duration <= g.Start+g.Settle {
		return usage("local: -duration is %v, too short for the gossip, which starts at %v and stops %v before the end", sc.Duration, g.Start, g.Settle)
	}
	if _, err := sc.Graph(); err != nil {
		return usage("local: %w (change -nodes or -degree)", err)
	}
	if set["report"] {
		if err := checkOutputPath("-report", *report); err != nil {
			return localOptions{}, err
		}
	}
	return localOptions{sc: sc, json: *jsonOut, report: *report, keep: *keep}, nil
}

// localCommand is peersim local; SIGINT or SIGTERM stops the nodes
// early (they write their results, which are gathered).
func localCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runLocal(ctx, args, stdout, stderr)
}

// runLocal is localCommand stopped by ctx rather than a signal.
func runLocal(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseLocalArgs(args, stderr)
	if code := usageExit(err, stderr); code >= 0 {
		return code
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(stderr, exitRun, fmt.Errorf("local: cannot find peersim's executable: %w", err))
	}
	dir := opts.keep
	if dir == "" {
		if dir, err = os.MkdirTemp("", "peersim-local-"); err != nil {
			return fail(stderr, exitRun, fmt.Errorf("local: %w", err))
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("local: -keep: %w", err))
	}
	var reportFile *os.File
	if opts.report != "" {
		if reportFile, err = os.Create(opts.report); err != nil {
			return fail(stderr, exitUsage, fmt.Errorf("local: -report: %w", err))
		}
	}
	discard := func() {
		if reportFile != nil {
			reportFile.Close()
			os.Remove(reportFile.Name())
		}
	}

	g, _ := opts.sc.Graph() // checked by parseLocalArgs
	fmt.Fprintf(stderr, "peersim: local: %d node processes on 127.0.0.1 (random regular, degree %d, %d edges), %v real time, seed %d; files in %s\n",
		opts.sc.Nodes, opts.sc.Degree, len(g.Edges()), opts.sc.Duration, opts.sc.Seed, dir)
	began := time.Now()
	var l *launch
	for attempt := 1; ; attempt++ {
		l, err = newLaunch(opts.sc, g, dir, exe, stderr)
		if err != nil {
			discard()
			return fail(stderr, exitRun, fmt.Errorf("local: %w", err))
		}
		if !l.run(ctx) || attempt == localAttempts {
			break
		}
		fmt.Fprintf(stderr, "peersim: local: a node's port was taken; launching again on other ports\n")
	}
	wall := time.Since(began)
	results, failed := l.results()
	if failed != nil {
		discard()
		fmt.Fprint(stderr, failed)
		return exitRun
	}
	res, err := simulation.Gather(opts.sc, g, results)
	if err != nil {
		discard()
		return fail(stderr, exitRun, fmt.Errorf("local: %w", err))
	}
	if res.DroppedEvents > 0 {
		fmt.Fprintf(stderr, "peersim: warning: the nodes lost or did not keep %d events; the measures miss them\n", res.DroppedEvents)
	}
	return emit(stdout, stderr, res, wall, opts.json, reportFile, localSection(opts.sc, l.configs[0]))
}

// localSection is the report's last section for a local run.
func localSection(sc simulation.Scenario, cfg simulation.NodeConfig) report.Section {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		b = []byte(err.Error())
	}
	return report.Section{
		ID:    "local",
		Title: "Local run",
		Text: []string{
			fmt.Sprintf("%d processes of peersim node on 127.0.0.1, over real TCP and TLS 1.3, in real time (%v): times are wall-clock times from the shared start, and the trace hash does not repeat.", sc.Nodes, sc.Duration),
			"Every link is loopback: no true latency is known, so selection quality (best picks, regret) and scores against the truth are not measured.",
			"Node 0's config, as peersim node -config reads it:",
		},
		Pre: []string{string(b)},
	}
}

// launch is one start of the node processes.
type launch struct {
	sc       simulation.Scenario
	dir, exe string
	stderr   *lockedWriter
	start    time.Time
	configs  []simulation.NodeConfig
	children []*child
}

// child is one node process.
type child struct {
	i       int
	cmd     *exec.Cmd
	results string
	tail    []string // its last stderr lines
	metrics atomic.Pointer[string]
	code    int // exit code; -1 killed
	err     error
	// exited and killed are the launch's own view (run's loop): the
	// process was reaped, or had to be killed.
	exited, killed bool
}

// lockedWriter serializes the lines of many writers.
type lockedWriter struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
}

// line writes one line; on a terminal it first clears the progress line.
func (lw *lockedWriter) line(s string) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.terminal {
		fmt.Fprint(lw.w, "\r\x1b[K")
	}
	fmt.Fprintln(lw.w, s)
}

// progress writes the progress line: rewritten in place on a terminal
// until the last, a line of a log elsewhere.
func (lw *lockedWriter) progress(s string, last bool) {
	if !lw.terminal || last {
		lw.line(s)
		return
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	fmt.Fprint(lw.w, "\r\x1b[K"+s)
}

// newLaunch picks ports and writes the nodes' configs.
func newLaunch(sc simulation.Scenario, g simulation.Graph, dir, exe string, stderr io.Writer) (*launch, error) {
	addrs, err := loopbackPorts(sc.Nodes)
	if err != nil {
		return nil, err
	}
	l := &launch{
		sc: sc, dir: dir, exe: exe, stderr: &lockedWriter{w: stderr, terminal: isTerminal(stderr)},
		start: time.Now().Add(localStartup + time.Duration(sc.Nodes)*localStartupPerNode),
	}
	ids := make([]peer.ID, sc.Nodes)
	for i := range ids {
		id, err := simulation.NodeIdentity(sc.Seed, i)
		if err != nil {
			return nil, err
		}
		ids[i] = id.ID()
	}
	for i := range sc.Nodes {
		cfg := simulation.NodeConfig{
			Node: i, Nodes: sc.Nodes, Seed: sc.Seed, Listen: addrs[i], Workload: sc.Workload,
			Start: l.start, Duration: sc.Duration, Metrics: "127.0.0.1:0",
			Results:     filepath.Join(dir, fmt.Sprintf("node-%d.results.json", i)),
			LimitExempt: []string{"127.0.0.0/8"}, // every node is 127.0.0.1: the per-IP limits would bite
		}
		for _, j := range g.Adj[i] {
			// The lower-numbered end dials, as in the simulator.
			cfg.Peers = append(cfg.Peers, simulation.NodePeer{Node: j, ID: ids[j], Addrs: []string{addrs[j]}, Dial: j > i})
		}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, fmt.Sprintf("node-%d.config.json", i))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return nil, err
		}
		os.Remove(cfg.Results) // an earlier launch's
		l.configs = append(l.configs, cfg)
		l.children = append(l.children, &child{i: i, cmd: exec.Command(exe, "node", "-config", path), results: cfg.Results})
	}
	return l, nil
}

// loopbackPorts returns n distinct free addresses on 127.0.0.1: bound
// all at once, then released for the nodes to take. Another process may
// take one meanwhile; the node then exits with exitAddrInUse.
func loopbackPorts(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs, nil
}

// run starts the processes and waits for them all to exit: until the
// run's end and a grace, after which it kills the stragglers; ctx's end
// sends them SIGTERM. It reports whether a node found its port taken
// before the start, in which case it killed the others: launch again.
func (l *launch) run(ctx context.Context) (retry bool) {
	exits := make(chan *child, len(l.children))
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range l.children {
		stderr, err := c.cmd.StderrPipe()
		if err == nil {
			err = c.cmd.Start()
		}
		if err != nil {
			c.code, c.err = -1, err
			exits <- c
			continue
		}
		wg.Go(func() {
			c.forward(stderr, l.stderr)
			c.err = c.cmd.Wait()
			c.code = c.cmd.ProcessState.ExitCode()
			exits <- c
		})
	}
	p := &localProgress{l: l, began: time.Now()}
	every := refreshLog
	if l.stderr.terminal {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	deadline := time.NewTimer(time.Until(l.start.Add(l.sc.Duration.D() + localKillGrace)))
	defer deadline.Stop()
	done := ctx.Done()
	send := func(sig os.Signal, kill bool) {
		for _, c := range l.children {
			if c.cmd.Process != nil && !c.exited {
				c.killed = c.killed || kill
				_ = c.cmd.Process.Signal(sig)
			}
		}
	}
	for running := len(l.children); running > 0; {
		select {
		case c := <-exits:
			running--
			c.exited = true
			if c.code == exitAddrInUse && time.Now().Before(l.start) && !retry {
				retry = true
				send(os.Kill, true)
			}
		case <-done:
			done = nil
			l.stderr.line("peersim: local: stopping the nodes (SIGTERM)")
			send(syscall.SIGTERM, false)
		case <-deadline.C:
			l.stderr.line(fmt.Sprintf("peersim: local: killing the nodes still running %v after the end", localKillGrace))
			send(os.Kill, true)
		case <-tick.C:
			p.show(running, false)
		}
	}
	p.show(0, true)
	return retry
}

// forward copies the child's stderr to w line by line, prefixed with its
// index, keeping the last lines for an error message and noting its
// metrics address.
func (c *child) forward(r io.Reader, w *lockedWriter) {
	const keep = 12
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, "metrics on http://"); ok {
			addr := strings.TrimSuffix(rest, "/metrics")
			c.metrics.Store(&addr)
		}
		if prefix := fmt.Sprintf("node %d", c.i); strings.HasPrefix(line, prefix+" ") || strings.HasPrefix(line, prefix+":") {
			w.line(line) // it names itself
		} else {
			w.line(prefix + ": " + line)
		}
		c.tail = append(c.tail, line)
		if len(c.tail) > keep {
			c.tail = c.tail[1:]
		}
	}
	_, _ = io.Copy(io.Discard, r) // a line too long: drain, so that Wait returns
}

// results reads the nodes' results; failed says which nodes failed and
// why, if any did.
func (l *launch) results() ([]*simulation.NodeResult, error) {
	results := make([]*simulation.NodeResult, len(l.children))
	var failures []string
	for _, c := range l.children {
		why := ""
		switch {
		case c.killed:
			why = "killed: it did not stop in time"
		case c.code != 0:
			why = fmt.Sprintf("exit %d (%v)", c.code, c.err)
		default:
			b, err := os.ReadFile(c.results)
			if err == nil {
				results[c.i] = new(simulation.NodeResult)
				err = json.Unmarshal(b, results[c.i])
			}
			if err != nil {
				why = fmt.Sprintf("no results: %v", err)
			}
		}
		if why == "" {
			continue
		}
		msg := fmt.Sprintf("peersim: local: node %d failed: %s", c.i, why)
		if len(c.tail) > 0 {
			msg += "; its last words:\n    " + strings.Join(c.tail, "\n    ")
		}
		failures = append(failures, msg)
	}
	if failures != nil {
		return nil, errors.New(strings.Join(failures, "\n") + "\n")
	}
	return results, nil
}

// localProgress is peersim local's progress line: the time, the nodes
// running and the links up, as the nodes' own metrics say.
type localProgress struct {
	l     *launch
	began time.Time
}

// scrapeClient reads the nodes' metrics for the progress line, a
// connection per scrape: a node's connection kept idle would outlive the
// run (and its goroutines with it).
var scrapeClient = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}

func (p *localProgress) show(running int, last bool) {
	l := p.l
	at := time.Since(l.start)
	when := fmt.Sprintf("%5.1fs to the start", -at.Seconds())
	if at >= 0 {
		when = fmt.Sprintf("%v/%v", min(at, l.sc.Duration.D()).Round(time.Second), l.sc.Duration)
	}
	peers, scraped := 0, 0
	if running > 0 {
		for _, c := range l.children {
			if addr := c.metrics.Load(); addr != nil {
				if n, err := scrapeGauge(*addr, "peerlink_peers"); err == nil {
					peers += int(n)
					scraped++
				}
			}
		}
	}
	s := fmt.Sprintf("peersim: %6.1fs wall  %s  %d/%d nodes running", time.Since(p.began).Seconds(), when, running, l.sc.Nodes)
	if scraped > 0 {
		s += fmt.Sprintf("  %d links up (from %d nodes' /metrics)", peers/2, scraped)
	}
	l.stderr.progress(s, last)
}

// scrapeGauge reads an unlabelled metric from a node's /metrics.
func scrapeGauge(addr, name string) (float64, error) {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", addr, name)
}
