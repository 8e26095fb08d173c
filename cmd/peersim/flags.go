package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/peerlink/peerlink/simulation"
)

// options is what the command line asks for.
type options struct {
	sc     simulation.Scenario // the scenario with the flags' overrides, validated
	json   bool
	report string // path of the HTML report, "" for none
}

// usageError is a mistake in the command line or in a file it names:
// exit 2. printed says the flag package has already printed it.
type usageError struct {
	err     error
	printed bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// parseArgs parses the command line and builds the scenario it asks for,
// checking everything that can be checked before a run (the scenario,
// its graph, the report's directory), so that a mistake costs no run.
// Its errors are *usageError, naming the flag, the file or the scenario
// field; only the flag package's own are printed (to stderr) already.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := newFlagSet("peersim", stderr, func(w io.Writer) {
		def, _ := defaultScenario(defaultNodes, simulation.DefaultDegree, defaultSeed, defaultDuration)
		fmt.Fprintf(w, "Usage: peersim [flags]\n"+
			"       peersim node -config FILE    (one real node over TCP; peersim node -h)\n"+
			"       peersim local [flags]        (N real node processes on 127.0.0.1; peersim local -h)\n\n"+
			"Runs real peerlink managers over a simulated network in virtual time and\n"+
			"prints what they did. With no flags: %s.\n", describe(def))
	})
	scenarioFile := fs.String("scenario", "", "run the scenario in this JSON `file` (see simulation/scenarios) instead of the default one")
	nodes := fs.Int("nodes", 0, "override the scenario's node count")
	degree := fs.Int("degree", 0, "override the scenario's degree (random-regular degree, small-world lattice degree)")
	duration := fs.Duration("duration", 0, "override the scenario's virtual `duration`, such as 2m")
	seed := fs.Uint64("seed", 0, "override the scenario's seed (same seed, same run and trace hash)")
	jsonOut := fs.Bool("json", false, "print the results as JSON on stdout instead of the table")
	report := fs.String("report", "", "write a self-contained HTML report with charts to this `file`")
	usage := func(format string, a ...any) (options, error) {
		return options{}, &usageError{err: fmt.Errorf(format, a...)}
	}
	if err := parseFlags(fs, args); err != nil {
		return options{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var sc simulation.Scenario
	if set["scenario"] {
		f, err := os.Open(*scenarioFile)
		if err != nil {
			return usage("-scenario: %w", err)
		}
		sc, err = simulation.DecodeScenario(f)
		f.Close()
		if err != nil {
			return usage("-scenario %s: %w", *scenarioFile, err)
		}
	}
	switch {
	case set["nodes"] && (*nodes < 2 || *nodes > simulation.MaxNodes):
		return usage("-nodes is %d, want 2 to %d", *nodes, simulation.MaxNodes)
	case set["degree"] && *degree < 1:
		return usage("-degree is %d, want 1 or more", *degree)
	case set["duration"] && *duration <= 0:
		return usage("-duration is %v, want a positive duration such as 60s", *duration)
	}
	if !set["scenario"] {
		var err error
		sc, err = defaultScenario(pick(set["nodes"], *nodes, defaultNodes), pick(set["degree"], *degree, simulation.DefaultDegree),
			pick(set["seed"], *seed, defaultSeed), pick(set["duration"], *duration, defaultDuration))
		if err != nil {
			return usage("default scenario: %w (change -nodes or -degree)", err)
		}
	} else {
		sc.Nodes = pick(set["nodes"], *nodes, sc.Nodes)
		sc.Degree = pick(set["degree"], *degree, sc.Degree)
		sc.Duration = pick(set["duration"], simulation.Duration(*duration), sc.Duration)
		sc.Seed = pick(set["seed"], *seed, sc.Seed)
	}
	if err := sc.Validate(); err != nil {
		return usage("scenario %s: %w", scenarioName(sc), err)
	}
	if _, err := sc.Graph(); err != nil {
		return usage("scenario %s: %w (change -nodes or -degree)", scenarioName(sc), err)
	}
	if set["report"] {
		if err := checkOutputPath("-report", *report); err != nil {
			return options{}, err
		}
	}
	return options{sc: sc, json: *jsonOut, report: *report}, nil
}

// checkOutputPath checks that a file can be created at path, named by
// flag in the error (a *usageError).
func checkOutputPath(flag, path string) error {
	usage := func(format string, a ...any) error { return &usageError{err: fmt.Errorf(format, a...)} }
	if path == "" {
		return usage("%s: empty file name", flag)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return usage("%s %s: directory %s does not exist", flag, path, filepath.Dir(path))
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usage("%s %s: is a directory", flag, path)
	}
	return nil
}

// newFlagSet returns a flag set that prints its errors and usage to
// stderr: head, then the flags.
func newFlagSet(name string, stderr io.Writer, head func(io.Writer)) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		head(fs.Output())
		fmt.Fprint(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs, refusing arguments that are not
// flags. Its errors are *usageError (printed already if the flag
// package's); flag.ErrHelp for -h.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return &usageError{err: err, printed: true}
	}
	if fs.NArg() > 0 {
		return &usageError{err: fmt.Errorf("unexpected argument %q (every option is a flag; see %s -h)", fs.Arg(0), fs.Name())}
	}
	return nil
}

// pick returns flag if it was set, else def.
func pick[T any](set bool, flag, def T) T {
	if set {
		return flag
	}
	return def
}

func scenarioName(sc simulation.Scenario) string {
	if sc.Name == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", sc.Name)
}

// Figures of the default scenario.
const (
	defaultNodes    = 100
	defaultSeed     = 3
	defaultDuration = 130 * time.Second
)

// defaultScenario is what peersim runs with no -scenario: the shipped
// churn scenario at the scale the issue asks of the default run (about
// 100 nodes of degree 8, Ethereum's and gossipsub's mesh degree), over
// the baseline's links (20–60 ms, ± 5 ms per packet, 100 Mbit/s), with
// the managers' default health checks. From 10 s to 100 s churn crashes
// a node every 5 s on average, each down for 8 s; at 30 s one link goes
// silent (a black hole: its ends must find out by their health checks);
// at 40 s another slows to 200 ms and 1 Mbit/s; at 50 s a node loses
// power for 40 s (its peers see silence, not a close, and the default
// health checks, 3 failures of a ping every 10 s with a 5 s timeout,
// take about 35 s to tell).
//
// The black hole and the degraded link are edges of the graph that
// nodes, degree and seed give, so that every fault hits a link
// whatever the flags; the power cut hits the last node, which churn
// may also pick (churn then skips it while it is down). A graph the
// flags make impossible is an error.
func defaultScenario(nodes, degree int, seed uint64, d time.Duration) (simulation.Scenario, error) {
	s := func(d time.Duration) simulation.Duration { return simulation.Duration(d) }
	sc := simulation.Scenario{
		Name:     "churn-100",
		Nodes:    nodes,
		Topology: simulation.TopologyRandomRegular,
		Degree:   degree,
		Duration: s(d),
		Seed:     seed,
		Link: simulation.LinkSpec{
			Latency: s(40 * time.Millisecond), Spread: s(20 * time.Millisecond),
			Jitter: s(5 * time.Millisecond), Bandwidth: 12_500_000,
		},
		// Gossip through every node's balancer (about 100 messages from
		// the whole network over the run) and requests through SelectBest,
		// light enough that the run takes about 20–30 s of wall time on two
		// cores.
		Workload: &simulation.WorkloadSpec{
			Gossip:   &simulation.GossipSpec{Rate: 0.008},
			Requests: &simulation.RequestSpec{Rate: 0.2},
		},
	}
	if nodes != defaultNodes {
		sc.Name = fmt.Sprintf("churn-%d", nodes)
	}
	g, err := sc.Graph()
	if err != nil {
		return sc, err
	}
	edges := g.Edges()
	if len(edges) == 0 {
		return sc, fmt.Errorf("the graph of %d nodes of degree %d has no edge", nodes, degree)
	}
	// Two edges apart from each other where the graph has them.
	hole, slow := edges[0], edges[len(edges)/2]
	sc.Faults = []simulation.Fault{
		{Kind: simulation.FaultChurn, At: s(10 * time.Second), For: s(90 * time.Second), Rate: 0.2, Down: s(8 * time.Second)},
		{Kind: simulation.FaultBlackHole, At: s(30 * time.Second), Nodes: hole[:]},
		{Kind: simulation.FaultDegrade, At: s(40 * time.Second), Nodes: slow[:],
			Link: &simulation.LinkSpec{Latency: s(200 * time.Millisecond), Bandwidth: 125_000}},
		{Kind: simulation.FaultPowerOff, At: s(50 * time.Second), For: s(40 * time.Second), Nodes: []int{nodes - 1}},
	}
	return sc, nil
}

// describe says in a few words what sc runs.
func describe(sc simulation.Scenario) string {
	name := sc.Name
	if name == "" {
		name = "unnamed scenario"
	}
	topo := sc.Topology
	if topo == "" {
		topo = simulation.TopologyRandomRegular
	}
	deg := ""
	if topo != simulation.TopologyFullMesh {
		d := sc.Degree
		if d == 0 {
			d = simulation.DefaultDegree
		}
		deg = fmt.Sprintf(" of degree %d", d)
	}
	return fmt.Sprintf("%s, %d nodes (%s%s), %v virtual, seed %d, %d faults", name, sc.Nodes, topo, deg, sc.Duration, sc.Seed, len(sc.Faults))
}
