package mux

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// Package mux is written against one yamux release, and not only its API:
// it writes yamux data frames itself and reads the frames off the link
// before yamux does, so it depends on yamux internals no compiler checks.
const (
	yamuxPath    = "github.com/hashicorp/yamux"
	yamuxVersion = "v0.1.2"
	yamuxSum     = "h1:XtB8kyFOyHXYVFnwT5C3+Bdo8gArse7j2AQ0DA0Uey8=" // go.sum, v0.1.2
)

// yamuxDependents names, for each yamux behaviour that mux mirrors or
// relies on, the code that does and the tests that would notice a
// change. Whoever upgrades yamux reads yamux's changes against each of
// them (and against ARCHITECTURE.md) before changing yamuxVersion.
var yamuxDependents = []struct{ behaviour, code, tests string }{
	{
		"wire format: 12-byte header (version 0, type, flags, stream ID, length), data frames only carry a body, the RST code in the length field that yamux leaves 0 and ignores",
		"frameconn.go (constants, frameTracker, writeDataLocked, putDataHeader, injectRST), header.go",
		"frameconn_test.go: TestFrameTracker, FuzzFrameReader, TestFrameConnWriteData, TestFrameConnInjectRST, TestFrameConnNoAllocs; " +
			"session_test.go: TestHeaderWithFirstWrite, TestResetAcknowledged; schedhelpers_test.go: fakeRemote (TestBackpressure, TestChunkNoAllocs)",
	},
	{
		"sendLoop writes each frame with one Write, a data frame as two (header, then exactly its body), from one goroutine",
		"frameconn.go (Write: the stashed header, joinSaves, pending injected frames, outOfStep)",
		"frameconn_test.go: TestFrameConnJoinsHeaderAndBody, TestJoinSaves, TestFrameConnWriteDataKeepsBoundary, TestFrameConnInjectRST; sched_test.go: TestInFlightBound",
	},
	{
		"window accounting: 256 KiB initial stream window (initialStreamWindow), the receiver's update once half of it is used, MaxStreamWindowSize, SYN/ACK carried by window updates",
		"sched.go (send windows, credit), config.go (StreamWindow, DefaultStreamWindow), the root window.go",
		"sched_test.go: TestSchedulerShares, TestWindowStallDoesNotBlock, TestWriteWaitBounded, TestCloseWakesWriter, TestBackpressure, TestIntegrity; " +
			"session_test.go: TestEcho8MiB, TestResetWakesBlocked; the root window_test.go",
	},
	{
		"RST/FIN handling: Close is a half close kept until the remote's FIN or StreamCloseTimeout, a plain RST for refused SYNs (backlog, GoAway), ErrConnectionReset/ErrStreamClosed/ErrTimeout on a stream, IsClosed, NumStreams",
		"session.go (onFrame, queueAckLocked, release, refuse, shutdownCause), stream.go (mapErr, Reset, Close), frameconn.go (codeRefusal, noteSYN), slots.go",
		"session_test.go: TestReset, TestResetWakesBlocked, TestResetAcknowledged, TestRemoteCloseEOF, TestUnknownProtocol, TestMalformedHeader, TestHeaderTimeout, TestMalformedSeenByOpener, TestStreamLimitInbound, TestStreamFlood; " +
			"slots_test.go: TestOpenerSlotFollowsRemote, TestSessionEndReturnsNodeSlots; teardown_test.go: TestGoAway, TestGoAwayRefusesCrossingStream, TestHandlerPanic; sched_test.go: TestCloseWakesWriter",
	},
	{
		"what the guard mirrors of a stream's life in yamux: a stream exists from a SYN (window update or data frame) until both FINs or a RST either way; a RST read from the link makes yamux forget the stream at once, with its buffer, and stops its close timer; data and window updates for a missing stream are dropped (the body read and discarded); the remote's pings are answered by a goroutine per ping (which mux does instead); the receive buffer is a bytes.Buffer grown by doubling (StreamMemory); a data frame past the receive window ends the session",
		"guard.go, recvfilter.go (injectIn, the filter), node.go (StreamMemory), session.go (admitInbound, handlerReturned), stream.go (refuse)",
		"hostile_test.go: TestHostileRefusedStreamFlood, TestHostileSlowReaders, TestHostileDataAfterReset, TestDataAfterHandlerReturned, TestHostileCannotTakeTheNodesSlots, TestHostilePingFlood, TestHostileWindowOverflowAndGoAway; fuzz_test.go: FuzzSessionFrames; node_test.go: TestNodeMemoryBudget; the root hostile_test.go",
	},
	{
		"the global timer pool (util.go timerPool, a sync.Pool of timers shared by every session): a timer from a synctest bubble must not reach another bubble or a goroutine outside",
		"schedhelpers_test.go (inBubble empties the pool around each bubble); teardown_test.go is named to run after the bubble tests; internal/bubbletest (the root package's bubble tests) and health/internal/linktest are test binaries of their own for it (stream close timers left by real-time tests fire outside any bubble)",
		"ping_test.go: TestPingShared; sched_test.go: TestSchedulerShares, TestCriticalLatency, TestNoStarvation, TestWriteWaitBounded, TestBackpressureOrder; slots_test.go: TestOpenStreamWaits",
	},
	{
		"close and timeouts: Ping (a ping ID per call, no shared ping, ConnectionWriteTimeout from the send), keepalive (ErrKeepAliveTimeout), Close waiting for the recv and send loops only (not keepalive or ping-reply goroutines), a Read blocked at shutdown spinning until Close marks its stream, OpenStream blocking on its SYN's write, StreamOpenTimeout (its pending-open goroutines), log line texts",
		"session.go (PingContext, runPing, wakeStreams, closeYamux, acceptLoopDone, finish), log.go",
		"ping_test.go: TestPingContextRTT, TestPingContextDeadline, TestPingCloseInFlight, TestPingRemoteEnd, TestPingShared; " +
			"session_test.go: TestPing, TestKeepAliveTimeout, TestCloseWaitsForHandlers, TestOpenStreamContext, TestStreamFlood; teardown_test.go: TestStartCloseInHandler, TestWaitContext, TestStreamContext; log_test.go: TestYamuxLogger",
	},
}

// TestYamuxVersionPinned fails on any change of the yamux module: another
// version, a replace directive, or other contents under the same version.
// Its message lists what to read again before accepting the change.
func TestYamuxVersionPinned(t *testing.T) {
	var problems []string

	// What go.mod selects. Since Go 1.17 a main module's go.mod lists the
	// selected version of every module that provides a package, so its
	// require line is the version built, unless a replace swaps it.
	gomod := findGoMod(t)
	req, replaced := scanGoMod(t, gomod)
	if req != yamuxVersion {
		problems = append(problems, "go.mod requires "+yamuxPath+" "+req+", not "+yamuxVersion)
	}
	if replaced != "" {
		problems = append(problems, "go.mod replaces it: "+replaced)
	}
	if sum := findSum(t, filepath.Join(filepath.Dir(gomod), "go.sum")); sum != yamuxSum {
		problems = append(problems, "go.sum has "+yamuxPath+" "+yamuxVersion+" "+sum+", not "+yamuxSum)
	}

	// What the binary was built with, where the build records it (test
	// binaries have so far been built without their dependencies listed).
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != yamuxPath {
				continue
			}
			if d.Version != yamuxVersion {
				problems = append(problems, "built with "+yamuxPath+" "+d.Version)
			}
			if d.Replace != nil {
				problems = append(problems, "built with "+yamuxPath+" replaced by "+d.Replace.Path+" "+d.Replace.Version)
			}
			if d.Sum != "" && d.Sum != yamuxSum {
				problems = append(problems, "built with "+yamuxPath+" sum "+d.Sum)
			}
		}
	}

	if len(problems) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("yamux is not exactly " + yamuxVersion + ":\n  " + strings.Join(problems, "\n  "))
	b.WriteString("\n\nmux mirrors yamux " + yamuxVersion + "'s internals. Before accepting the change, read yamux's diff against each of these, then run the tests named with -race -count=20 and update yamuxVersion and yamuxSum here:\n")
	for _, d := range yamuxDependents {
		b.WriteString("\n- " + d.behaviour + "\n    code:  " + d.code + "\n    tests: " + d.tests + "\n")
	}
	b.WriteString("\nand ARCHITECTURE.md, sections \"Streams (mux)\" and \"Write scheduler\".")
	t.Fatal(b.String())
}

// findGoMod returns the path of the module's go.mod, searching up from
// the package directory (the test's working directory).
func findGoMod(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "go.mod")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// scanGoMod returns the version go.mod requires of yamux ("" if none) and
// the first replace directive that names yamux ("" if none).
func scanGoMod(t *testing.T, path string) (version, replace string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == ")" {
			block = ""
			continue
		}
		verb := block
		if block == "" {
			verb, fields = fields[0], fields[1:]
			if len(fields) == 1 && fields[0] == "(" {
				block = verb
				continue
			}
		}
		switch {
		case verb == "module" && (len(fields) != 1 || fields[0] != "github.com/peerlink/peerlink"):
			t.Fatalf("%s is not peerlink's go.mod: module %v", path, fields)
		case verb == "require" && len(fields) >= 2 && fields[0] == yamuxPath:
			version = fields[1]
		case verb == "replace" && len(fields) >= 1 && fields[0] == yamuxPath && replace == "":
			replace = strings.Join(fields, " ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return version, replace
}

// findSum returns go.sum's hash of yamux's module contents at
// yamuxVersion ("" if it has none).
func findSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == yamuxPath && f[1] == yamuxVersion {
			return f[2]
		}
	}
	return ""
}
