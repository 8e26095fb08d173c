package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/peerlink/peerlink/internal/raceflag"
	"github.com/peerlink/peerlink/simulation"
	"go.uber.org/goleak"
)

// mainEnv makes the test binary run main instead of the tests, so that
// a test can run the real command, testing.Main and all, in a child.
const mainEnv = "PEERSIM_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		main()
	}
	goleak.VerifyTestMain(m)
}

// peersim runs the command in-process, in a bubble of t, and returns
// its exit code, stdout and stderr.
func peersim(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut, func(body func()) {
		defer raceflag.Bubble()() // the race runtime's limit in bubbles: see raceflag
		synctest.Test(t, func(*testing.T) { body() })
	})
	return code, out.String(), errOut.String()
}

// tiny shrinks the default scenario to a few nodes, long enough for its
// power cut (at 50 s, for 20 s) to be detected by the default health
// checks (about 30–40 s).
var tiny = []string{"-nodes", "12", "-degree", "4", "-duration", "100s"}

func TestPeersimDefaultScenarioSmall(t *testing.T) {
	code, out, errOut := peersim(t, tiny...)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("summary line %q is not 'measure  value'", line)
		}
		rows[k] = strings.TrimSpace(v)
	}
	for k, re := range map[string]string{
		"scenario":                `^churn-12 \(seed 3\)$`,
		"network":                 `^12 nodes, 24 edges$`,
		"virtual time":            `^1m40s$`,
		"fully connected at":      `^[0-9.]+m?s$`,
		"crashes / restarts":      `^[1-9][0-9]* / [1-9][0-9]*$`,
		"reconnect after restart": `^[1-9][0-9]*: p50 `,
		"dead-link detection":     `^[1-9][0-9]*: p50 `, // the power cut
		"events lost":             `^0$`,
		"trace":                   `^[0-9]+ records, hash [0-9a-f]{16}$`,
		"wall time":               `real time\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(rows[k]) {
			t.Errorf("summary %q is %q, want %s\n%s", k, rows[k], re, out)
		}
	}
	// The progress line ends on the whole run's virtual time, with
	// the wall time measured outside the bubble (so not 0 nor 100 s).
	last := regexp.MustCompile(`peersim: +([0-9.]+)s wall  1m40s/1m40s virtual  ([0-9]+)/12 nodes up  ([0-9]+) links up \(24 edges\)`).FindStringSubmatch(errOut)
	if last == nil {
		t.Fatalf("no final progress line in stderr:\n%s", errOut)
	}
	if last[1] == "100.0" {
		t.Errorf("progress shows virtual time as wall time: %s", last[0])
	}
	if last[3] == "0" {
		t.Errorf("progress counts no link up at the end: %s", last[0])
	}
}

// runJSON runs peersim -json and decodes its stdout, which must be one
// JSON value and nothing else.
func runJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := peersim(t, append([]string{"-json"}, args...)...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	return decodeOne(t, out)
}

func decodeOne(t *testing.T, out string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("stdout has more than one JSON value:\n%s", out)
	}
	return v
}

func TestPeersimSameSeedSameTrace(t *testing.T) {
	args := append([]string{"-seed", "11"}, tiny...)
	a, b := runJSON(t, args...), runJSON(t, args...)
	if a["trace_hash"] == nil || a["trace_hash"] != b["trace_hash"] || a["trace_len"] != b["trace_len"] {
		t.Errorf("one seed, two traces: %v (%v records) and %v (%v records)", a["trace_hash"], a["trace_len"], b["trace_hash"], b["trace_len"])
	}
	c := runJSON(t, append([]string{"-seed", "12"}, tiny...)...)
	if c["trace_hash"] == a["trace_hash"] {
		t.Errorf("seeds 11 and 12 give one trace hash %v", a["trace_hash"])
	}
	if a["seed"] != 11.0 || a["nodes"] != 12.0 || a["wall_time"] == nil || len(a["samples"].([]any)) != 101 {
		t.Errorf("JSON result: seed %v, nodes %v, wall_time %v, %d samples; want 11, 12, a wall time, 101",
			a["seed"], a["nodes"], a["wall_time"], len(a["samples"].([]any)))
	}
}

func TestPeersimScenarioFileAndReport(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "crash.json")
	if err := os.WriteFile(sc, []byte(`{
		"name": "crash-one", "nodes": 8, "degree": 4, "duration": "40s", "seed": 1,
		"link": {"latency": "10ms"},
		"faults": [{"kind": "crash", "at": "10s", "for": "5s", "nodes": [2]}]
	}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run.html")
	v := runJSON(t, "-scenario", sc, "-seed", "7", "-nodes", "10", "-report", out)
	if v["scenario"] != "crash-one" || v["seed"] != 7.0 || v["nodes"] != 10.0 || v["crashes"] != 1.0 || v["restarts"] != 1.0 {
		t.Errorf("result of the file with -seed 7 -nodes 10: scenario %v seed %v nodes %v crashes %v restarts %v",
			v["scenario"], v["seed"], v["nodes"], v["crashes"], v["restarts"])
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("-report: %v", err)
	}
	// The report's scenario, saved, runs the same run again.
	m := regexp.MustCompile(`(?s)<section id="scenario">.*?<pre>(.*?)</pre>`).FindSubmatch(page)
	if m == nil {
		t.Fatal("report has no scenario section")
	}
	again := filepath.Join(dir, "again.json")
	if err := os.WriteFile(again, []byte(html.UnescapeString(string(m[1]))), 0o644); err != nil {
		t.Fatal(err)
	}
	if w := runJSON(t, "-scenario", again); w["trace_hash"] != v["trace_hash"] || w["seed"] != 7.0 || w["nodes"] != 10.0 {
		t.Errorf("the report's scenario ran again: trace hash %v, seed %v, nodes %v; want %v, 7, 10", w["trace_hash"], w["seed"], w["nodes"], v["trace_hash"])
	}
	for _, want := range []string{"<title>peersim report: crash-one</title>", "<title>Nodes and links up over time</title>", "<title>Reconnect time by cause (CDF)</title>", v["trace_hash"].(string)} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestPeersimBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.json", `{"nodes": 4, "duration": "10s", "link": {"latency": "1ms"}, "nodez": 3}`)
	badNode := write("badnode.json", `{"nodes": 4, "degree": 2, "duration": "10s", "link": {"latency": "1ms"}, "faults": [{"kind": "crash", "at": "1s", "nodes": [9]}]}`)
	notJSON := write("not.json", `nodes: 4`)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-nodes", "1"}, "-nodes is 1"},
		{[]string{"-nodes", "many"}, `invalid value "many" for flag -nodes`},
		{[]string{"-degree", "0"}, "-degree is 0"},
		{[]string{"-duration", "-5s"}, "-duration is -5s"},
		{[]string{"-duration", "5"}, `invalid value "5" for flag -duration`},
		{[]string{"-seed", "-1"}, "flag -seed"},
		{[]string{"-nodes", "5"}, "degree 8"}, // no 8-regular graph of 5 nodes
		{[]string{"-frobnicate"}, "-frobnicate"},
		{[]string{"leftover"}, `unexpected argument "leftover"`},
		{[]string{"-scenario", filepath.Join(dir, "missing.json")}, "missing.json: no such file"},
		{[]string{"-scenario", unknown}, `unknown field "nodez"`},
		{[]string{"-scenario", badNode}, "Faults[0].Nodes has node 9"},
		{[]string{"-scenario", notJSON}, "not.json"},
		{[]string{"-scenario", badNode, "-nodes", "3"}, "Faults[0].Nodes"},
		{[]string{"-report", filepath.Join(dir, "no", "such", "dir.html")}, "does not exist"},
		{[]string{"-report", dir}, "is a directory"},
	} {
		code, out, errOut := peersim(t, c.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("peersim %q: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, an error naming %q", c.args, code, out, errOut, c.want)
		}
	}
	// The errors keep their causes, for callers of parseArgs.
	if _, err := parseArgs([]string{"-scenario", badNode}, io.Discard); !errors.Is(err, simulation.ErrScenario) {
		t.Errorf("bad scenario file: %v, want it to wrap simulation.ErrScenario", err)
	}
	if _, err := parseArgs([]string{"-nodes", "5"}, io.Discard); !errors.Is(err, simulation.ErrTopology) {
		t.Errorf("-nodes 5: %v, want it to wrap simulation.ErrTopology", err)
	}
	if code, _, errOut := peersim(t, "-h"); code != exitOK || !strings.Contains(errOut, "-scenario file") || !strings.Contains(errOut, "churn-100, 100 nodes") {
		t.Errorf("peersim -h: exit %d, %q; want 0 and the flags with the default scenario", code, errOut)
	}
}

// TestPeersimBinary runs the real command, main and testing.Main
// included, in a child process: stdout must be clean JSON (testing.Main's
// PASS kept out of it), the trace hash must repeat, and bad input must
// exit 2 before any run.
func TestPeersimBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(args ...string) (int, string, string) {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), mainEnv+"=1")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String(), errOut.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String(), errOut.String()
		}
		t.Fatalf("%s: %v", exe, err)
		return 0, "", ""
	}
	args := append([]string{"-json", "-seed", "5"}, tiny...)
	code, out, errOut := child(args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	a := decodeOne(t, out)
	_, out2, _ := child(args...)
	if b := decodeOne(t, out2); a["trace_hash"] != b["trace_hash"] {
		t.Errorf("two processes, one seed: trace hashes %v and %v", a["trace_hash"], b["trace_hash"])
	}
	if !strings.Contains(errOut, "1m40s/1m40s virtual") {
		t.Errorf("no progress line on stderr:\n%s", errOut)
	}
	if code, out, errOut := child("-nodes", "0"); code != exitUsage || out != "" || !strings.Contains(errOut, "-nodes is 0") {
		t.Errorf("-nodes 0: exit %d, stdout %q, stderr %q; want 2 and an error naming -nodes", code, out, errOut)
	}
}

// TestPeersimTraceMatchesLibrary checks that peersim's reading of the
// nodes for its progress line leaves the run as simulation.Run alone
// makes it: one scenario and seed, one trace hash, in the CLI or not.
func TestPeersimTraceMatchesLibrary(t *testing.T) {
	opts, err := parseArgs(tiny, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var lib *simulation.Result
	runtime.GC()
	runtime.GC()
	defer raceflag.Bubble()()
	synctest.Test(t, func(t *testing.T) {
		if lib, err = simulation.Run(context.Background(), opts.sc, simulation.Options{Settle: synctest.Wait}); err != nil {
			t.Fatal(err)
		}
	})
	runtime.GC()
	runtime.GC()
	if cli := runJSON(t, tiny...); cli["trace_hash"] != lib.TraceHash {
		t.Errorf("peersim's trace hash %v, simulation.Run's %v", cli["trace_hash"], lib.TraceHash)
	}
}
