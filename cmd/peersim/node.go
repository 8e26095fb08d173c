package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/peerlink/peerlink/simulation"
)

// nodeCommand is peersim node: one real node over TCP and TLS 1.3, as
// its config file says, until its duration is over or SIGINT or SIGTERM
// stops it; then its results as JSON.
func nodeCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runNodeCommand(ctx, args, stdout, stderr)
}

// runNodeCommand is nodeCommand stopped by ctx rather than a signal.
func runNodeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("peersim node", stderr, func(w io.Writer) {
		fmt.Fprint(w, "Usage: peersim node -config FILE\n\n"+
			"Runs one real peerlink node over TCP and TLS 1.3 in real time: its workload,\n"+
			"its Prometheus metrics at /metrics, and its results as JSON at exit (to the\n"+
			"config's results file, or stdout). SIGINT or SIGTERM stops it early, results\n"+
			"written. Exit 2: bad config; 3: its listen address is taken; 1: other failure.\n")
	})
	config := fs.String("config", "", "run the node this JSON `file` describes (fields: see simulation.NodeConfig and the README)")
	if code := usageExit(parseFlags(fs, args), stderr); code >= 0 {
		return code
	}
	if *config == "" {
		return fail(stderr, exitUsage, errors.New("node: -config is missing: want the node's JSON config file"))
	}
	f, err := os.Open(*config)
	if err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("node: -config: %w", err))
	}
	cfg, err := simulation.DecodeNodeConfig(f)
	f.Close()
	if err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("node: -config %s: %w", *config, err))
	}
	if cfg.Results != "" {
		if err := checkOutputPath("results", cfg.Results); err != nil {
			return fail(stderr, exitUsage, fmt.Errorf("node: -config %s: %w", *config, err))
		}
	}
	res, err := simulation.RunNode(ctx, cfg, simulation.NodeOptions{Log: stderr})
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fail(stderr, exitAddrInUse, fmt.Errorf("node %d: %w", cfg.Node, err))
	case errors.Is(err, simulation.ErrNodeConfig):
		return fail(stderr, exitUsage, fmt.Errorf("node: -config %s: %w", *config, err))
	case err != nil:
		return fail(stderr, exitRun, err)
	}
	if err := writeNodeResult(cfg.Results, stdout, res); err != nil {
		return fail(stderr, exitRun, fmt.Errorf("node %d: results: %w", cfg.Node, err))
	}
	return exitOK
}

// writeNodeResult writes res as JSON to path, or to stdout if path is
// empty. The file appears whole or not at all: a reader never sees half
// of it.
func writeNodeResult(path string, stdout io.Writer, res *simulation.NodeResult) error {
	if path == "" {
		return json.NewEncoder(stdout).Encode(res)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	err = json.NewEncoder(tmp).Encode(res)
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
