package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/peer"
)

// attackers is the number of sockets a flood holds open.
const attackers = 300

// honestLimit is how long an honest dial may take under a flood, on its
// first try.
const honestLimit = time.Second

// The flood tests run three parties, each in its own process: the
// listener under test (the test itself), the flood and the honest
// dialer (this test binary again, running TestHelperProcess). Sharing
// one Go scheduler, the flood's goroutines, or the listener's accept
// loop running flat out under the flood, delay the honest dialer between
// its connect and its ClientHello: in trials, by up to 150 ms in one
// process, enough to be evicted as silent. No dialer on another host is
// that slow to speak; in one process the test would measure the
// scheduler, not the listener.
const (
	helperEnv     = "PEERLINK_TEST_HELPER" // "flood" or "dial"
	helperAddr    = "PEERLINK_TEST_ADDR"   // the listener
	helperSlow    = "PEERLINK_TEST_SLOW"   // flood: "1" for slow sockets
	helperPeer    = "PEERLINK_TEST_PEER"   // dial: the listener's ID
	helperFrom    = "PEERLINK_TEST_FROM"   // dial: the local IP to bind, if set
	helperNetwork = testNetwork
)

// TestHelperProcess is a child process of the flood tests; in a normal
// run it does nothing. It reports on stdout, in lines starting with its
// kind.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "flood":
		// Flood until stdin is closed.
		f := startFlood(os.Getenv(helperAddr), attackers, os.Getenv(helperSlow) == "1")
		_, _ = io.Copy(io.Discard, os.Stdin)
		f.stop()
		fmt.Printf("flood: %d attacker dials, %d failed\n", f.dials.Load(), f.dialErrs.Load())
	case "dial":
		fmt.Println("dial:", honestDial(t))
	default:
		t.Skip("a child process of the flood tests")
	}
}

// honestDial dials the listener once, as the helper's environment says,
// and returns its report: "id=… took=… err=…".
func honestDial(t *testing.T) string {
	id, err := peer.GenerateIdentity()
	if err != nil {
		return "err=" + err.Error()
	}
	expected, err := peer.ParseID(os.Getenv(helperPeer))
	if err != nil {
		return "err=" + err.Error()
	}
	tr, err := NewTCP(Config{Identity: id, Network: helperNetwork})
	if err != nil {
		return "err=" + err.Error()
	}
	if from := os.Getenv(helperFrom); from != "" {
		tr.dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	start := time.Now()
	c, err := tr.Dial(ctx, os.Getenv(helperAddr), expected)
	took := time.Since(start)
	report := "id=" + id.ID().String() + " took=" + strconv.FormatInt(int64(took), 10)
	if err != nil {
		return report + " err=" + err.Error()
	}
	c.Close()
	return report
}

// helper is a running child process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
	done  bool
}

func startHelper(t *testing.T, env ...string) *helper {
	t.Helper()
	h := &helper{cmd: exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")}
	h.cmd.Env = append(os.Environ(), env...)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.finish(t) }) // if the test ends early
	return h
}

// finish closes the child's stdin and waits for it to end, within
// 2×waitLimit (it is killed then).
func (h *helper) finish(t *testing.T) {
	if h.done {
		return
	}
	h.done = true
	h.stdin.Close()
	exited := make(chan error, 1)
	go func() { exited <- h.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("child process: %v\n%s", err, h.out.String())
		}
	case <-time.After(2 * waitLimit):
		h.cmd.Process.Kill()
		<-exited
		t.Errorf("child process killed: it did not end within %v\n%s", 2*waitLimit, h.out.String())
	}
}

// report returns the value of the child's report line "kind: value".
func (h *helper) report(kind string) string {
	for _, l := range strings.Split(h.out.String(), "\n") {
		if v, ok := strings.CutPrefix(l, kind+": "); ok {
			return v
		}
	}
	return ""
}

// flood holds sockets open to a listener from 127.0.0.1, each in its own
// goroutine, which sends nothing (silent) or one byte (slow), waits
// until the listener drops the socket, and at once opens another, until
// stop.
type flood struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	conns   map[net.Conn]struct{}

	dials, dialErrs atomic.Int64
}

func startFlood(addr string, n int, slow bool) *flood {
	f := &flood{conns: make(map[net.Conn]struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var d net.Dialer
	for range n {
		f.wg.Go(func() {
			var buf [64]byte
			for f.ctx.Err() == nil {
				c, err := d.DialContext(f.ctx, "tcp", addr)
				if err != nil {
					if f.ctx.Err() == nil {
						f.dialErrs.Add(1)
					}
					continue
				}
				f.dials.Add(1)
				if !f.track(c) {
					return
				}
				if slow {
					_, _ = c.Write([]byte{0x16})
				}
				for { // until the listener drops it, or stop closes it
					if _, err := c.Read(buf[:]); err != nil {
						break
					}
				}
				f.untrack(c)
			}
		})
	}
	return f
}

func (f *flood) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *flood) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *flood) stop() {
	f.cancel()
	f.mu.Lock()
	f.stopped = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// eventCounter is a listener hook that counts events by kind and wakes
// those waiting for a count; it never blocks.
type eventCounter struct {
	mu      sync.Mutex
	counts  map[string]int
	waiters []counterWaiter
}

type counterWaiter struct {
	kinds []string
	n     int
	ch    chan struct{}
}

func (c *eventCounter) hook(kind string, _ net.Addr, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	c.counts[kind]++
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if c.sumLocked(w.kinds) >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *eventCounter) sumLocked(kinds []string) int {
	n := 0
	for _, k := range kinds {
		n += c.counts[k]
	}
	return n
}

// count returns the number of events of the given kinds.
func (c *eventCounter) count(kinds ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sumLocked(kinds)
}

// wait waits until n events of the given kinds (together) were seen.
func (c *eventCounter) wait(t *testing.T, n int, kinds ...string) {
	t.Helper()
	ch := make(chan struct{})
	c.mu.Lock()
	if c.sumLocked(kinds) >= n {
		close(ch)
	} else {
		c.waiters = append(c.waiters, counterWaiter{kinds, n, ch})
	}
	c.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("fewer than %d %v events within %v", n, kinds, waitLimit)
	}
}

// underFlood runs one honest dial (from the local IP from, if set) to a
// listener configured by mod while a flood of silent or slow sockets
// from 127.0.0.1 runs, from before the dial until after it. The dial
// must succeed on its first try within honestLimit. No goroutine may be
// left once the listener is closed.
func underFlood(t *testing.T, slow bool, mod func(*Config), from string) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := tcpEnv{}
	a := newNode(t, e, mod)
	var events eventCounter
	a.up.hook = events.hook
	l, err := a.tr.Listen(e.listenAddr())
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	accepted := make(chan Conn, 1)
	var acceptWG sync.WaitGroup
	acceptWG.Go(func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	})

	slowEnv := "0"
	if slow {
		slowEnv = "1"
	}
	fl := startHelper(t, helperEnv+"=flood", helperAddr+"="+addr, helperSlow+"="+slowEnv)
	// The flood is on once the listener has dropped as many sockets as
	// there are attackers, and still on after the dial once it has
	// dropped a quarter as many more.
	drops := []string{"evicted", "overlimit", "silent"}
	events.wait(t, attackers, drops...)
	before := a.stats()

	dialer := startHelper(t, helperEnv+"=dial", helperAddr+"="+addr, helperPeer+"="+a.ID().String(), helperFrom+"="+from)
	var ac Conn
	select {
	case ac = <-accepted:
	case <-time.After(2 * waitLimit):
	}
	dialer.finish(t)
	during := a.stats()
	events.wait(t, events.count(drops...)+attackers/4, drops...)
	fl.finish(t)

	l.Close()
	acceptWG.Wait()
	if ac == nil {
		select {
		case ac = <-accepted: // nil, or a link admitted just before Close
		default:
		}
	}
	after := a.stats()

	// The honest dialer's report: "id=… took=…[ err=…]".
	report := dialer.report("dial")
	var (
		id      peer.ID
		took    time.Duration
		dialErr string
	)
	for f := range strings.FieldsSeq(report) {
		switch k, v, _ := strings.Cut(f, "="); k {
		case "id":
			id, _ = peer.ParseID(v)
		case "took":
			ns, _ := strconv.ParseInt(v, 10, 64)
			took = time.Duration(ns)
		}
	}
	if _, e, ok := strings.Cut(report, " err="); ok {
		dialErr = e
	}
	t.Logf("honest dial from %s took %v (err: %q)", or(from, "127.0.0.1"), took, dialErr)
	t.Logf("while the honest dialer ran: %d silent and %d slow evictions, %d busy refusals; whole test: %d silent and %d slow evictions, %d busy refusals, %d first-byte timeouts, %d failed; %s",
		during.InboundEvictedSilent-before.InboundEvictedSilent, during.InboundEvictedSlow-before.InboundEvictedSlow,
		during.InboundOverLimit-before.InboundOverLimit,
		after.InboundEvictedSilent, after.InboundEvictedSlow, after.InboundOverLimit,
		after.InboundFirstByteTimeout, after.InboundFailed, fl.report("flood"))
	switch {
	case report == "":
		t.Fatalf("no report from the honest dialer:\n%s", dialer.out.String())
	case dialErr != "":
		t.Fatalf("honest dial under a flood failed: %s", dialErr)
	case took > honestLimit:
		t.Errorf("honest dial under a flood took %v, want at most %v", took, honestLimit)
	}
	if ac == nil {
		t.Fatal("honest link not accepted")
	}
	if ac.RemotePeer() != id {
		t.Errorf("accepted a link from %s, want the honest %s", ac.RemotePeer().ShortString(), id.ShortString())
	}
	ac.Close()
	if after.InboundPending != 0 {
		t.Errorf("pending %d after Close", after.InboundPending)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Silent sockets, reopened as soon as they are dropped, do not keep an
// honest dialer out.
func TestSilentFlood(t *testing.T) {
	t.Run("global cap", func(t *testing.T) {
		// Loopback exempt from the per-address caps: the flood fills all
		// 64 places, the honest dialer shares the scope with it and
		// takes the oldest silent socket's place.
		underFlood(t, false, func(c *Config) {
			c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}, "")
	})
	t.Run("other subnet", func(t *testing.T) {
		// The defaults: the per-IP cap keeps the flood to 8 places.
		underFlood(t, false, nil, otherSubnet(t))
	})
	t.Run("same address", func(t *testing.T) {
		underFlood(t, false, nil, "")
	})
}

// Slow sockets (one byte, then nothing), reopened as soon as they are
// dropped, do not keep out an honest dialer from another address: the
// flood holds its own per-IP places and is refused beyond them.
func TestSlowFlood(t *testing.T) {
	underFlood(t, true, nil, otherSubnet(t))
}

// otherSubnet returns a loopback address outside 127.0.0.0/24, or skips
// the test where it cannot be bound.
func otherSubnet(t *testing.T) string {
	const addr = "127.0.1.1"
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skipf("cannot bind %s: %v", addr, err)
	}
	l.Close()
	return addr
}
