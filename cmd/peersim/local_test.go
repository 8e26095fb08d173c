package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerlink/peerlink/simulation"
)

// TestPeersimLocal runs peersim local with 4 node processes (this test
// binary, running main as peersim node) for 6 s of real time over TCP on
// 127.0.0.1, and checks the merged result: every message delivered to
// every node, requests answered, selection quality not made up, the
// nodes' processes measured, the configs and results kept, and the
// report written.
func TestPeersimLocal(t *testing.T) {
	t.Setenv(mainEnv, "1") // the children run main
	dir := t.TempDir()
	keep, page := filepath.Join(dir, "run"), filepath.Join(dir, "local.html")
	var out, errOut bytes.Buffer
	code := runLocal(context.Background(), []string{"-nodes", "4", "-duration", "6s", "-seed", "9", "-json", "-report", page, "-keep", keep}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", code, errOut.String())
	}
	var res struct {
		simulation.Result
		WallTime simulation.Duration `json:"wall_time"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%s", err, out.String())
	}
	if res.Mode != simulation.ModeLocal || res.Nodes != 4 || res.Edges != 6 || res.Seed != 9 || !res.FullyConnected || res.DroppedEvents != 0 {
		t.Errorf("result: mode %q, %d nodes, %d edges, seed %d, fully connected %v, %d events lost",
			res.Mode, res.Nodes, res.Edges, res.Seed, res.FullyConnected, res.DroppedEvents)
	}
	if n := len(res.Samples); n == 0 || res.Samples[n-1].EdgesUp != 6 || res.Samples[n-1].NodesUp != 4 {
		t.Errorf("links over time end with %+v, want 4 nodes and 6 edges up", res.Samples[len(res.Samples)-1])
	}
	// A message published while links were still coming up may miss a
	// node (an origin sends to k = degree − 1 of its peers, and relays
	// only over the links they have): every message published once the
	// mesh was whole must reach every node.
	if res.Gossip == nil || !res.FullyConnected {
		t.Fatalf("gossip %+v, fully connected %v", res.Gossip, res.FullyConnected)
	}
	whole := 0
	for _, m := range res.Gossip.Messages {
		if m.At <= res.FullyConnectedAt {
			continue
		}
		whole++
		if !m.Complete || m.Target != 4 || m.To100 <= 0 {
			t.Errorf("message %x published at %v, after the mesh was whole (%v): %+v", m.ID, m.At, res.FullyConnectedAt, m)
		}
	}
	if whole == 0 {
		t.Errorf("no message published after the mesh was whole at %v: %+v", res.FullyConnectedAt, res.Gossip.Messages)
	}
	if r := res.Requests; r == nil || r.Sent == 0 || r.OK != r.Sent || r.Latency.P50 <= 0 {
		t.Errorf("requests: %+v, want every one answered", r)
	}
	for _, q := range res.Selection {
		if q.Picks != 0 || q.BestShare != 0 {
			t.Errorf("selection %s: %d picks judged, best share %v, on loopback where no true latency is known", q.Strategy, q.Picks, q.BestShare)
		}
	}
	if res.HeapPerNode <= 0 || res.RSSPerNode <= res.HeapPerNode || res.GoroutinesPerNode < 1 || res.CPUPerNode <= 0 {
		t.Errorf("processes: heap %d, RSS %d, %.1f goroutines, CPU %v", res.HeapPerNode, res.RSSPerNode, res.GoroutinesPerNode, res.CPUPerNode)
	}
	if res.WallTime.D() < 6*time.Second {
		t.Errorf("wall time %v, shorter than the run", res.WallTime)
	}
	for i := range 4 {
		for _, f := range []string{"node-%d.config.json", "node-%d.results.json"} {
			if _, err := os.Stat(filepath.Join(keep, fmt.Sprintf(f, i))); err != nil {
				t.Errorf("-keep: %v", err)
			}
		}
	}
	for _, want := range []string{"node 2: ", "listening on 127.0.0.1:", "nodes running", "report written to"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr has no %q:\n%s", want, errOut.String())
		}
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "</html>", "node processes over TCP", "Gossip propagation", "not measured", `id="local"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("report has no %q", want)
		}
	}
}

func TestPeersimLocalBadFlags(t *testing.T) {
	dir := t.TempDir()
	flood := filepath.Join(dir, "flood.json")
	if err := os.WriteFile(flood, []byte(`{"nodes": 4, "degree": 2, "duration": "10s", "workload": {"flood": {"nodes": [1]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-nodes", "1"}, "-nodes is 1"},
		{[]string{"-nodes", "3", "-degree", "3"}, "-degree is 3"},
		{[]string{"-duration", "0s"}, "-duration is 0s"},
		{[]string{"-duration", "2s"}, "-duration is 2s, too short"},
		{[]string{"-nodes", "5", "-degree", "3"}, "change -nodes or -degree"}, // no 3-regular graph of 5 nodes
		{[]string{"-scenario", filepath.Join(dir, "none.json")}, "-scenario"},
		{[]string{"-scenario", flood}, "workload.flood"},
		{[]string{"-report", dir}, "is a directory"},
		{[]string{"-colour"}, "-colour"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var out, errOut bytes.Buffer
		code := runLocal(context.Background(), c.args, &out, &errOut)
		if code != exitUsage || out.Len() != 0 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("peersim local %q: exit %d, stdout %q, stderr %q; want exit 2 and an error naming %q", c.args, code, out.String(), errOut.String(), c.want)
		}
	}
}

func TestPeersimNodeBadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", time.Now().UnixNano()))
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := `"node":0,"nodes":2,"listen":"127.0.0.1:0","start":"2026-01-01T00:00:00Z","duration":"1s"`
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-config is missing"},
		{[]string{"-config", filepath.Join(dir, "none.json")}, "none.json"},
		{[]string{"-config", write(`{` + base + `,"nodez":3}`)}, `unknown field "nodez"`},
		{[]string{"-config", write(`{` + strings.Replace(base, `"nodes":2`, `"nodes":0`, 1) + `}`)}, "nodes is 0"},
		{[]string{"-config", write(`{` + base + `,"results":"` + filepath.Join(dir, "no", "r.json") + `"}`)}, "results"},
		{[]string{"-config", write(`{` + base + `,"key_file":"` + dir + `"}`)}, "key_file"},
		{[]string{"-config", write(`{` + base + `}`), "extra"}, `unexpected argument "extra"`},
	} {
		var out, errOut bytes.Buffer
		code := runNodeCommand(context.Background(), c.args, &out, &errOut)
		if code != exitUsage || out.Len() != 0 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("peersim node %q: exit %d, stdout %q, stderr %q; want exit 2 and an error naming %q", c.args, code, out.String(), errOut.String(), c.want)
		}
	}
}

// TestPeersimNodeResultsOnStdout runs one node that nobody dials, stopped
// early by its context as by a signal: its results go to stdout.
func TestPeersimNodeResultsOnStdout(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "node.json")
	start := time.Now().Format(time.RFC3339Nano)
	if err := os.WriteFile(cfg, []byte(`{"node":1,"nodes":2,"seed":4,"listen":"127.0.0.1:0","start":"`+start+`","duration":"1h"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	stderr := &signalWriter{seen: "listening on", ch: make(chan struct{}, 1)}
	done := make(chan int, 1)
	go func() { done <- runNodeCommand(ctx, []string{"-config", cfg}, &out, stderr) }()
	select {
	case <-stderr.ch:
	case code := <-done:
		t.Fatalf("exit %d before listening", code)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var res simulation.NodeResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("stdout: %v\n%s", err, out.String())
	}
	id, _ := simulation.NodeIdentity(4, 1)
	if res.Node != 1 || res.ID != id.ID() || res.Ended.D() >= time.Hour || res.Process.Goroutines == 0 {
		t.Errorf("results: node %d, ID %v (want %v), ended %v, process %+v", res.Node, res.ID, id.ID(), res.Ended, res.Process)
	}
}

// signalWriter signals ch once a write contains seen.
type signalWriter struct {
	buf  bytes.Buffer
	seen string
	ch   chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.seen)) {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	return w.buf.Write(p)
}

func TestPeersimSubcommandsHelp(t *testing.T) {
	for _, c := range []struct {
		run  func(args []string, stdout, stderr *bytes.Buffer) int
		want string
	}{
		{func(a []string, o, e *bytes.Buffer) int { return runLocal(context.Background(), a, o, e) }, "-keep directory"},
		{func(a []string, o, e *bytes.Buffer) int { return runNodeCommand(context.Background(), a, o, e) }, "-config file"},
		{func(a []string, o, e *bytes.Buffer) int { _, code := checkArgs(a, e); return code }, "peersim local [flags]"},
	} {
		var out, errOut bytes.Buffer
		if code := c.run([]string{"-h"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("-h: exit %d, %q; want 0 and %q", code, errOut.String(), c.want)
		}
	}
}

// TestLocalResultsNameFailures checks what peersim local says of nodes
// that failed: which, why, and their last stderr lines.
func TestLocalResultsNameFailures(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.json")
	if err := os.WriteFile(ok, []byte(`{"node": 0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &launch{children: []*child{
		{i: 0, results: ok},
		{i: 1, code: 1, err: errors.New("exit status 1"), tail: []string{"panic: boom", "goroutine 1"}},
		{i: 2, killed: true, code: -1},
		{i: 3, results: filepath.Join(dir, "missing.json")},
	}}
	_, err := l.results()
	if err == nil {
		t.Fatal("no failure reported")
	}
	for _, want := range []string{"node 1 failed: exit 1", "    panic: boom", "node 2 failed: killed", "node 3 failed: no results", "missing.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("failure report has no %q:\n%s", want, err)
		}
	}
	if strings.Contains(err.Error(), "node 0 failed") {
		t.Errorf("node 0 reported failed:\n%s", err)
	}
}
