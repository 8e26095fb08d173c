package simulation

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/mux"
)

// FuzzGossipFrames feeds the gossip frame parser bytes as a peer could
// send them: it never reads a payload past maxMessageSize, never panics,
// ends only at a frame boundary with io.EOF, and reads back exactly the
// frames written.
func FuzzGossipFrames(f *testing.F) {
	f.Add(appendGossipFrame(nil, 1<<40|7, 3, 4), uint64(9), uint16(2), uint16(5))
	f.Add(appendGossipFrame(appendGossipFrame(nil, 1, 0, 0), 2, 1<<16-1, 256), uint64(0), uint16(0), uint16(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0xff, 0xff, 0xff}, uint64(1), uint16(1), uint16(1)) // 4 GiB announced
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 9, 1, 2}, uint64(1), uint16(1), uint16(1))       // payload cut short
	f.Add([]byte{1, 2, 3}, uint64(1), uint16(1), uint16(1))                                              // header cut short
	f.Fuzz(func(t *testing.T, data []byte, id uint64, hop, size uint16) {
		var h [gossipHeader]byte
		r := bytes.NewReader(data)
		for {
			at := r.Len()
			_, _, err := readGossipFrame(r, &h)
			if err == nil {
				continue
			}
			switch {
			case errors.Is(err, io.EOF):
				if at != 0 {
					t.Fatalf("io.EOF with %d bytes of a frame read", at)
				}
			case errors.Is(err, ErrGossipFrame):
				if n := binary.BigEndian.Uint32(h[10:]); n <= maxMessageSize {
					t.Fatalf("%v for a payload of %d bytes", err, n)
				}
				if read := at - r.Len(); read != gossipHeader {
					t.Fatalf("%d bytes read of an oversized frame, want its header alone", read)
				}
			case !errors.Is(err, io.ErrUnexpectedEOF):
				t.Fatalf("error %v", err)
			}
			break
		}
		frames := appendGossipFrame(appendGossipFrame(nil, id, int(hop), int(size)), id+1, int(hop)+1, 0)
		r = bytes.NewReader(frames)
		for k := range uint64(2) {
			gotID, gotHop, err := readGossipFrame(r, &h)
			if err != nil || gotID != id+k || gotHop != min(int(hop)+int(k), 1<<16-1) {
				t.Fatalf("frame %d: %d, %d, %v; want %d, %d", k, gotID, gotHop, err, id+k, int(hop)+int(k))
			}
		}
		if _, _, err := readGossipFrame(r, &h); err != io.EOF {
			t.Fatalf("after the frames: %v, want io.EOF", err)
		}
	})
}

// gossipScenario: n nodes of degree 8 for d, about msgs messages
// published from 2 s to 5 s before the end, forwarded after validation.
func gossipScenario(n int, d time.Duration, msgs float64, validation time.Duration) Scenario {
	sc := baseline(n)
	sc.Degree, sc.Duration = 8, Duration(d)
	sc.Workload = &WorkloadSpec{Gossip: &GossipSpec{Rate: msgs / (float64(n) * (d - 7*time.Second).Seconds()), Validation: Duration(validation)}}
	return sc
}

// Forwarding at once, the copies of two neighbours cross on every
// redundant edge: about degree − 2 duplicates per node. Validating first,
// a node learns meanwhile which neighbours have the message (those a hop
// nearer its origin, whose copies come within the validation) and skips
// them: duplicates fall, and each hop takes the validation longer. The
// copies of two neighbours that got it at about the same time still
// cross, so the figure stays above (k−2)/2.
func TestGossipValidationCutsDuplicates(t *testing.T) {
	run := func(v time.Duration) *GossipResult {
		var g *GossipResult
		inBubble(t, func(t *testing.T) {
			res, err := Run(t.Context(), gossipScenario(30, 12*time.Second, 12, v), bubbleOpts())
			if err != nil {
				t.Fatal(err)
			}
			g = res.Gossip
		})
		t.Logf("validation %v: %d counted, delivery %.3f, to 99 %% p50 %v, duplicates/node %.2f (theory %.1f), last hop %.1f, send errors %d",
			v, g.Counted, g.Delivery, g.To99.P50, g.DuplicatesPerNode, g.DuplicatesTheory, g.LastHopMean, g.SendErrors)
		if g.Counted < 6 || g.Delivery != 1 || g.SendErrors != 0 {
			t.Fatalf("validation %v: %d counted, delivery %v, %d send errors; want every message everywhere", v, g.Counted, g.Delivery, g.SendErrors)
		}
		return g
	}
	now, checked := run(0), run(50*time.Millisecond)
	if now.DuplicatesTheory != 3 || now.DuplicatesPerNode < 5 || now.DuplicatesPerNode > 6.5 {
		t.Fatalf("forwarding at once: %.2f duplicates per node (theory %.1f), want about degree − 2 = 6", now.DuplicatesPerNode, now.DuplicatesTheory)
	}
	if checked.DuplicatesPerNode > now.DuplicatesPerNode-1 || checked.DuplicatesPerNode < now.DuplicatesTheory {
		t.Fatalf("validating 50 ms: %.2f duplicates per node, at once %.2f: want at least 1 fewer, not below (k−2)/2 = %.1f",
			checked.DuplicatesPerNode, now.DuplicatesPerNode, now.DuplicatesTheory)
	}
	if d := checked.To99.P50.D() - now.To99.P50.D(); d < 50*time.Millisecond {
		t.Fatalf("to 99 %%: %v validating, %v not: want at least one validation more", checked.To99.P50, now.To99.P50)
	}
}

// A copy whose peer stops answering is reported as failed, to the
// balancer and in SendErrors, and gossip goes on over the link once it
// is redialed.
func TestGossipSendFailuresReported(t *testing.T) {
	sc := gossipScenario(12, 22*time.Second, 30, 0)
	sc.Degree = 4
	sc.Health = HealthSpec{Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), FailureThreshold: 2}
	g, _ := sc.Graph()
	e := edgeOf(g, 3)
	sc.Faults = []Fault{{Kind: FaultBlackHole, At: Duration(5 * time.Second), Nodes: []int{e[0], e[1]}}}
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		gr := res.Gossip
		t.Logf("%d counted, delivery %.3f, send errors %d, detections %+v", gr.Counted, gr.Delivery, gr.SendErrors, res.Detections)
		if gr.SendErrors == 0 {
			t.Fatal("copies sent into a black hole, none reported failed")
		}
		if len(res.Detections) == 0 {
			t.Fatal("the black hole was not detected")
		}
		healed := time.Duration(0)
		for _, d := range res.Detections {
			healed = max(healed, d.At.D()+d.After.D())
		}
		late := 0
		for _, m := range gr.Messages {
			if m.At.D() > healed+5*time.Second {
				late++
				if !m.Complete {
					t.Fatalf("message %+v, published after the link was redialed, incomplete", m)
				}
			}
		}
		if late == 0 {
			t.Fatal("no message published after the link was redialed")
		}
	})
}

// A peer that announces a payload past the bound has its gossip stream
// reset, before any payload is read; a well-formed frame on the same
// kind of stream is acknowledged.
func TestGossipMalformedFrameResets(t *testing.T) {
	sc := gossipScenario(2, 10*time.Second, 0, 0)
	sc.Degree = 1
	inBubble(t, func(t *testing.T) {
		s, err := Start(sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(3 * time.Second) // virtual: the link is up
		open := func() *mux.Stream {
			st, err := s.Manager(0).OpenStream(t.Context(), s.ID(1), GossipProtocol, mux.PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			_ = st.SetDeadline(time.Now().Add(5 * time.Second))
			return st
		}
		good := open()
		defer good.Reset()
		if _, err := good.Write(appendGossipFrame(nil, 1, 0, 16)); err != nil {
			t.Fatal(err)
		}
		var ack [1]byte
		if _, err := io.ReadFull(good, ack[:]); err != nil || ack[0] != gossipAck {
			t.Fatalf("acknowledgement %v, %v", ack, err)
		}
		bad := open()
		frame := appendGossipFrame(nil, 2, 0, 0)
		binary.BigEndian.PutUint32(frame[10:], maxMessageSize+1)
		if _, err := bad.Write(frame); err != nil {
			t.Fatal(err)
		}
		var re *mux.ResetError
		if _, err := bad.Read(ack[:]); !errors.As(err, &re) {
			t.Fatalf("after an oversized frame: %v, want the stream reset", err)
		}
	})
}

// A peer whose link stops taking bytes (a black hole its health checks
// have not caught yet) delays only its own copies: its sender's other
// forwards and receive loops go on, so every message still reaches every
// node at once by the other paths.
func TestGossipStalledPeerDelaysNoOther(t *testing.T) {
	sc := gossipScenario(12, 20*time.Second, 80, 0)
	sc.Degree = 4
	sc.Workload.Gossip.Size = 64 << 10 // a few fill the stalled stream's window
	g, _ := sc.Graph()
	e := edgeOf(g, 0)
	const holeAt = 4 * time.Second
	sc.Faults = []Fault{{Kind: FaultBlackHole, At: Duration(holeAt), Nodes: []int{e[0], e[1]}}}
	inBubble(t, func(t *testing.T) {
		res, err := Run(t.Context(), sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		gr := res.Gossip
		after, fromStalled := 0, 0
		for _, m := range gr.Messages {
			if m.At.D() < holeAt+time.Second {
				continue
			}
			after++
			if MessageOrigin(m.ID) == e[0] {
				fromStalled++
			}
			if !m.Complete || m.To100.D() > 2*time.Second {
				t.Errorf("message %d from node %d, published at %v after the black hole at %v: complete %v in %v, want every node within 2 s",
					m.ID, MessageOrigin(m.ID), m.At, holeAt, m.Complete, m.To100)
			}
		}
		t.Logf("%d messages after the black hole, %d from the stalled peer's sender; send errors %d", after, fromStalled, gr.SendErrors)
		if after < 20 || fromStalled == 0 {
			t.Fatalf("%d messages after the black hole (%d from node %d): too few to tell", after, fromStalled, e[0])
		}
	})
}

// An agent keeps a gossip stream entry only for a peer it has a link to
// (or copies waiting for one): peers whose links end leave nothing
// behind, so identities that come and go cannot grow it.
func TestGossipForgetsPeersWhoseLinksEnd(t *testing.T) {
	sc := gossipScenario(4, 30*time.Second, 200, 0)
	sc.Degree = 3 // a full mesh: node 0 gossips to every other node
	inBubble(t, func(t *testing.T) {
		s, err := Start(sc, bubbleOpts())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		peers := func() []int {
			g := &s.nodes[0].agent.gossip
			g.mu.Lock()
			defer g.mu.Unlock()
			var out []int
			for p := range g.outs {
				j, _ := s.Node(p)
				out = append(out, j)
			}
			slices.Sort(out)
			return out
		}
		time.Sleep(8 * time.Second) // virtual: links up, gossip flowing
		synctest.Wait()
		if got := peers(); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("node 0 gossips to %v, want [1 2 3]", got)
		}
		for _, i := range []int{1, 2} {
			if err := s.Crash(i); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := peers(); !slices.Equal(got, []int{3}) {
			t.Fatalf("after nodes 1 and 2 crashed, node 0 keeps gossip streams to %v, want [3]", got)
		}
	})
}
