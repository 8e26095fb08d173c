// Command peersim runs many real peerlink ConnectionManagers in one
// process over the simulation package's in-memory network, in virtual
// time, and reports how they behaved under the scenario's faults.
//
// With no flags it runs the default scenario (100 nodes of degree 8,
// churn, a black-holed link, a degraded one and a power cut, 130
// virtual seconds), shows a progress line on stderr and prints a summary
// table on stdout.
// See the README, or run peersim -h, for the flags.
//
// Past one process, two subcommands run real nodes in real time over
// TCP and TLS 1.3 rather than simulated ones:
//
//	peersim node -config FILE
//	peersim local -nodes N [-degree D] [-duration 20s] [-seed S] [-scenario FILE] [-json] [-report FILE.html] [-keep DIR]
//
// peersim node runs one node as its JSON config (simulation.NodeConfig)
// says: its workload, its Prometheus metrics at /metrics, and its
// results (simulation.NodeResult) written as JSON at exit. It is the unit
// an orchestrator runs, one per pod or host. peersim local starts N such
// processes on 127.0.0.1, wired as a random regular graph, and gathers
// their results (simulation.Gather) into the same summary table, JSON
// and HTML report as a simulated run's.
//
// The run happens inside a testing/synctest bubble, which is what makes
// its clock virtual and its trace repeat from a seed. synctest.Test
// needs a *testing.T, which a plain program gets from testing.Main: main
// validates the flags and the scenario first (exit 2 on bad input), then
// hands the run to testing.Main, whose own output goes to /dev/null.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"testing/synctest"
)

func main() {
	args := os.Args[1:]
	stdout, stderr := os.Stdout, os.Stderr
	if len(args) > 0 {
		switch args[0] {
		case "node":
			os.Exit(nodeCommand(args[1:], stdout, stderr))
		case "local":
			os.Exit(localCommand(args[1:], stdout, stderr))
		}
	}
	if _, code := checkArgs(args, stderr); code >= 0 {
		os.Exit(code)
	}
	// testing.Main parses the global flag set from os.Args and prints
	// PASS or FAIL on os.Stdout: give it no arguments and no stdout, so
	// that -json output stays clean JSON.
	os.Args = os.Args[:1]
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = null
	}
	matchAll := func(pat, str string) (bool, error) { return true, nil }
	testing.Main(matchAll, []testing.InternalTest{{
		Name: "TestPeersim",
		F: func(t *testing.T) {
			code := run(args, stdout, stderr, func(body func()) {
				synctest.Test(t, func(*testing.T) { body() })
			})
			// Exit here with run's code rather than let testing.Main
			// pick 0 or 1 from a test that never fails.
			os.Exit(code)
		},
	}}, nil, nil)
}

// Exit codes.
const (
	exitOK    = 0
	exitRun   = 1 // the run failed, or a report could not be written
	exitUsage = 2 // bad flags, scenario or config file, or output path
	// exitAddrInUse: peersim node could not listen, its address being
	// taken (peersim local then retries with other ports).
	exitAddrInUse = 3
)

// bubbleFunc runs body inside a testing/synctest bubble and returns when
// body and every goroutine it started have returned.
type bubbleFunc func(body func())

// fail prints err prefixed with the command's name and returns code.
func fail(stderr io.Writer, code int, err error) int {
	fmt.Fprintln(stderr, "peersim:", err)
	return code
}

// checkArgs parses the command line; on a mistake it prints it and
// returns the exit code (0 for -h), else -1.
func checkArgs(args []string, stderr io.Writer) (options, int) {
	opts, err := parseArgs(args, stderr)
	return opts, usageExit(err, stderr)
}

// usageExit returns the exit code of a command line's error, printing it
// unless the flag package has: -1 for none, 0 for -h, else exitUsage.
func usageExit(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue) && ue.printed:
		return exitUsage
	default:
		return fail(stderr, exitUsage, err)
	}
}
