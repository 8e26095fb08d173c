package simulation

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// rawNet is a Network with a bare transport per node (no manager), to
// look at the links themselves.
type rawNet struct {
	t   *testing.T
	nw  *Network
	trs []transport.Transport
	lns []transport.Listener
}

func newRawNet(t *testing.T, n int, spec LinkSpec) *rawNet {
	t.Helper()
	nw, err := NewNetwork(n, spec, 99)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawNet{t: t, nw: nw}
	for i := range n {
		id, err := identity(99, i)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := nw.Transport(i)(transport.Config{Identity: id, Network: "simtest", HandshakeTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tr.Listen(nw.Addr(i))
		if err != nil {
			t.Fatal(err)
		}
		r.trs, r.lns = append(r.trs, tr), append(r.lns, ln)
	}
	t.Cleanup(func() {
		for _, ln := range r.lns {
			ln.Close()
		}
	})
	return r
}

// dial connects a to b and returns a's end and b's.
func (r *rawNet) dial(a, b int) (transport.Conn, transport.Conn, error) {
	acc := make(chan transport.Conn, 1)
	go func() {
		c, err := r.lns[b].Accept()
		if err != nil {
			c = nil
		}
		acc <- c
	}()
	id, _ := identity(99, b)
	ca, err := r.trs[a].Dial(context.Background(), r.nw.Addr(b), id.ID())
	if err != nil {
		r.lns[b].Close() // ends the Accept
		<-acc
		return nil, nil, err
	}
	cb := <-acc
	r.t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb, nil
}

// oneWay writes one byte from w and returns how long it took to reach r.
func oneWay(t *testing.T, w, r io.ReadWriter) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestNetworkLinkFigures(t *testing.T) {
	spec := LinkSpec{Latency: Duration(50 * time.Millisecond), Spread: Duration(20 * time.Millisecond)}
	a, _ := NewNetwork(50, spec, 1)
	b, _ := NewNetwork(50, spec, 1)
	c, _ := NewNetwork(50, spec, 2)
	same, lo, hi := 0, time.Hour, time.Duration(0)
	for i := range 50 {
		for j := range 50 {
			l := a.Link(i, j).Latency
			if l != b.Link(i, j).Latency {
				t.Fatalf("%d→%d: seed 1 gives %v then %v", i, j, l, b.Link(i, j).Latency)
			}
			if l == c.Link(i, j).Latency {
				same++
			}
			lo, hi = min(lo, l), max(hi, l)
		}
	}
	if lo < 30*time.Millisecond || hi > 70*time.Millisecond || hi-lo < 35*time.Millisecond {
		t.Fatalf("latencies span [%v, %v], want most of [30ms, 70ms]", lo, hi)
	}
	if same > 25 {
		t.Fatalf("seeds 1 and 2 agree on %d of 2500 links", same)
	}
	if a.Link(3, 4) == a.Link(4, 3) {
		t.Fatalf("3→4 and 4→3 drew the same figures %+v (directions are drawn apart)", a.Link(3, 4))
	}
	want := faultnet.Link{Latency: 5 * time.Millisecond, Bandwidth: 1e6}
	if err := a.SetLink(3, 4, want); err != nil || a.Link(3, 4) != want {
		t.Fatalf("after SetLink: %+v, %v", a.Link(3, 4), err)
	}
	if err := a.SetLink(3, 4, faultnet.Link{Latency: -1}); !errors.Is(err, ErrBadLink) {
		t.Fatalf("negative latency: %v", err)
	}
	for _, bad := range []LinkSpec{
		{Latency: -1},
		{Latency: Duration(time.Millisecond), Spread: Duration(2 * time.Millisecond)},
		{Latency: Duration(10 * time.Millisecond), Spread: Duration(5 * time.Millisecond), Jitter: Duration(6 * time.Millisecond)},
		{Bandwidth: -1},
		{Buffer: -1},
	} {
		if _, err := NewNetwork(2, bad, 1); !errors.Is(err, ErrBadLink) {
			t.Errorf("%+v: %v, want ErrBadLink", bad, err)
		}
	}
}

// The listener's end of a link is shaped as the reverse direction: each
// end knows which two nodes it joins.
func TestNetworkShapesEachDirection(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 3, LinkSpec{Latency: Duration(40 * time.Millisecond), Spread: Duration(30 * time.Millisecond)})
		ca, cb, err := r.dial(2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.nw.Conns(0, 2); n != 2 {
			t.Fatalf("%d conn ends between 0 and 2, want 2", n)
		}
		if got, want := oneWay(t, ca, cb), r.nw.Link(2, 0).Latency; got != want {
			t.Fatalf("2→0 took %v, want %v", got, want)
		}
		if got, want := oneWay(t, cb, ca), r.nw.Link(0, 2).Latency; got != want {
			t.Fatalf("0→2 took %v, want %v", got, want)
		}
	})
}

// Jitter varies the latency packet by packet, around the link's own,
// and keeps the bytes in order.
func TestNetworkJitter(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		spec := LinkSpec{Latency: Duration(40 * time.Millisecond), Jitter: Duration(10 * time.Millisecond)}
		r := newRawNet(t, 2, spec)
		ca, cb, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[time.Duration]bool{}
		var sum time.Duration
		const n = 200
		for range n {
			d := oneWay(t, ca, cb)
			if d < 30*time.Millisecond || d > 50*time.Millisecond {
				t.Fatalf("one way %v, want 40ms ± 10ms", d)
			}
			seen[d] = true
			sum += d
		}
		if len(seen) < n/2 {
			t.Fatalf("%d packets saw only %d latencies", n, len(seen))
		}
		if mean := sum / n; mean < 38*time.Millisecond || mean > 42*time.Millisecond {
			t.Fatalf("mean one way %v, want about 40ms", mean)
		}
		// Back-to-back writes arrive whole and in order, and a Close
		// right after them loses none.
		go func() {
			for i := range 1000 {
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], uint32(i))
				if _, err := ca.Write(b[:]); err != nil {
					t.Errorf("write %d: %v", i, err)
					return
				}
			}
			ca.Close()
		}()
		got, err := io.ReadAll(cb)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4000 {
			t.Fatalf("%d bytes arrived, want 4000", len(got))
		}
		for i := range 1000 {
			if v := binary.BigEndian.Uint32(got[4*i:]); v != uint32(i) {
				t.Fatalf("word %d is %d", i, v)
			}
		}
	})
}

func TestNetworkDegrade(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 2, LinkSpec{Latency: Duration(10 * time.Millisecond)})
		ca, cb, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		// A write deadline set before the degradation must not fail the
		// writes after it, once the caller has moved it on.
		_ = ca.SetWriteDeadline(time.Now().Add(time.Second))
		if err := r.nw.Degrade(0, 1, faultnet.Link{Latency: 90 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		_ = ca.SetWriteDeadline(time.Now().Add(time.Hour))
		time.Sleep(2 * time.Second)
		if got := oneWay(t, ca, cb); got != 100*time.Millisecond {
			t.Fatalf("degraded 0→1 took %v, want 100ms", got)
		}
		if got := oneWay(t, cb, ca); got != 10*time.Millisecond {
			t.Fatalf("1→0 took %v, want 10ms (only 0→1 degraded)", got)
		}
		if l := r.nw.Link(0, 1); l.Latency != 100*time.Millisecond {
			t.Fatalf("Link(0, 1) = %+v after Degrade", l)
		}
		// A bandwidth cut: 100 kB at 1 MB/s take 100 ms more.
		if err := r.nw.Degrade(0, 1, faultnet.Link{Bandwidth: 1e6}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		go func() { _, _ = ca.Write(make([]byte, 100e3)) }()
		if _, err := io.ReadFull(cb, make([]byte, 100e3)); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 200*time.Millisecond {
			t.Fatalf("100 kB over the narrowed link took %v, want 200ms", got)
		}
		// New connections are degraded too.
		ca2, cb2, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := oneWay(t, ca2, cb2); got < 100*time.Millisecond {
			t.Fatalf("new 0→1 connection took %v, want ≥ 100ms", got)
		}
	})
}

func TestNetworkBlackHoleAndReset(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 3, LinkSpec{Latency: Duration(5 * time.Millisecond)})
		ca, cb, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.nw.BlackHole(1, 0); n != 2 {
			t.Fatalf("black-holed %d ends, want 2", n)
		}
		if n, err := ca.Write([]byte("lost")); n != 4 || err != nil {
			t.Fatalf("write into the hole: %d, %v; want success", n, err)
		}
		_ = cb.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := cb.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from the hole: %v, want a deadline error", err)
		}
		if n := r.nw.Conns(0, 1); n != 2 {
			t.Fatalf("%d ends open after the hole, want 2 (sockets stay open)", n)
		}
		// A new link between them is healthy.
		ca2, cb2, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := oneWay(t, ca2, cb2); got != 5*time.Millisecond {
			t.Fatalf("new link took %v", got)
		}
		if n := r.nw.Reset(0, 1); n != 4 {
			t.Fatalf("reset %d ends, want 4", n)
		}
		_ = cb2.SetReadDeadline(time.Time{})
		if _, err := cb2.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after reset succeeded")
		}
		if _, err := ca2.Write([]byte{1}); err == nil {
			t.Fatal("write after reset succeeded")
		}
		if n := r.nw.Conns(0, 1); n != 0 {
			t.Fatalf("%d ends left after reset", n)
		}
	})
}

func TestNetworkPartition(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 4, LinkSpec{Latency: Duration(5 * time.Millisecond)})
		ca, cb, err := r.dial(0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.nw.Partition([]int{0, 1}); err != nil {
			t.Fatal(err)
		}
		if !r.nw.Partitioned(0, 2) || r.nw.Partitioned(0, 1) || r.nw.Partitioned(2, 3) {
			t.Fatal("Partitioned disagrees with the groups")
		}
		// The live link across the cut goes silent.
		_, _ = ca.Write([]byte{1})
		_ = cb.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := cb.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read across the cut: %v", err)
		}
		// A dial across it times out in the handshake.
		start := time.Now()
		if _, _, err := r.dial(1, 3); err == nil {
			t.Fatal("dial across the partition succeeded")
		} else if took := time.Since(start); took != 3*time.Second {
			t.Fatalf("dial across the partition failed after %v (%v), want the 3s handshake timeout", took, err)
		}
		// Within a side, links work.
		if _, _, err := r.dial(0, 1); err != nil {
			t.Fatalf("dial within a side: %v", err)
		}
		r.nw.Heal()
		if _, _, err := r.dial(2, 0); err != nil {
			t.Fatalf("dial after heal: %v", err)
		}
		for _, bad := range [][][]int{{{0, 9}}, {{0, 1}, {1, 2}}, {{-1}}} {
			if err := r.nw.Partition(bad...); err == nil {
				t.Errorf("Partition(%v) accepted", bad)
			}
		}
	})
}

func TestNetworkNoSuchNode(t *testing.T) {
	nw, err := NewNetwork(3, LinkSpec{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := nw.Degrade(0, 3, faultnet.Link{}); !errors.Is(err, ErrNoNode) {
		t.Errorf("Degrade to node 3 of 3: %v", err)
	}
	if err := nw.SetLink(-1, 0, faultnet.Link{}); !errors.Is(err, ErrNoNode) {
		t.Errorf("SetLink from -1: %v", err)
	}
	func() {
		defer func() {
			if err, _ := recover().(error); !errors.Is(err, ErrNoNode) {
				t.Errorf("Link(0, 5) panicked with %v", err)
			}
		}()
		nw.Link(0, 5)
	}()
	if _, err := NewNetwork(0, LinkSpec{}, 1); err == nil {
		t.Error("a network of 0 nodes")
	}
}

// A link's bottleneck: n bytes take n/Bandwidth to depart, then the
// latency; the writer is held back by the bounded queue, nothing is lost.
func TestNetworkBandwidth(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 2, LinkSpec{Latency: Duration(20 * time.Millisecond), Bandwidth: 1e6, Buffer: 64 << 10})
		ca, cb, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		const total = 1e6
		start := time.Now()
		errc := make(chan error, 1)
		go func() {
			buf := make([]byte, 16<<10)
			for sent := 0; sent < total; sent += len(buf) {
				if _, err := ca.Write(buf[:min(len(buf), total-sent)]); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		if _, err := io.ReadFull(cb, make([]byte, total)); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if got, want := time.Since(start), time.Second+20*time.Millisecond; got != want {
			t.Fatalf("1 MB over 1 MB/s and 20 ms took %v, want %v", got, want)
		}
	})
}

// A writer that outruns a jittered link is held back, and its write
// deadline ends the wait.
func TestNetworkJitterBackPressure(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRawNet(t, 2, LinkSpec{Latency: Duration(20 * time.Millisecond), Jitter: Duration(5 * time.Millisecond), Bandwidth: 100e3})
		ca, _, err := r.dial(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = ca.SetWriteDeadline(start.Add(time.Second))
		buf := make([]byte, 64<<10)
		written := 0
		for {
			n, err := ca.Write(buf)
			written += n
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("write: %v, want the deadline", err)
				}
				break
			}
		}
		if took := time.Since(start); took != time.Second {
			t.Fatalf("the deadline ended the write after %v, want 1s", took)
		}
		// The far end never reads: at most what the link lets overdue
		// (256 KiB, jitter included), its queue, with a write to spare.
		if limit := 256<<10 + faultnet.DefaultBuffer + len(buf); written > limit {
			t.Fatalf("%d bytes accepted in 1 s, want at most %d", written, limit)
		}
	})
}
