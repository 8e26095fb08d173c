package peerlink_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// Many streams at mixed priorities, some changing priority midway, each
// payload checked end to end over TCP + TLS.
func TestMixedPriorityStreamsIntact(t *testing.T) {
	a, b := newManager(t), newManager(t)
	if err := b.SetStreamHandler("/hash/1", func(s *mux.Stream) {
		h := sha256.New()
		if _, err := io.Copy(h, s); err != nil {
			return
		}
		_, _ = s.Write(h.Sum(nil))
	}); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	const streams = 24
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := rand.Int(rand.Reader, big.NewInt(1<<20))
			payload := make([]byte, 1+n.Int64())
			_, _ = rand.Read(payload)
			prio := mux.Priority(i % mux.NumPriorities)
			s, err := a.OpenStream(ctxT(t), b.ID(), "/hash/1", prio)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			half := len(payload) / 2
			if _, err := s.Write(payload[:half]); err != nil {
				errs <- err
				return
			}
			if i%3 == 0 { // change class midway
				if err := s.SetPriority(mux.PriorityCritical - prio); err != nil {
					errs <- err
					return
				}
			}
			if _, err := s.Write(payload[half:]); err != nil {
				errs <- err
				return
			}
			s.Close()
			got := make([]byte, sha256.Size)
			if _, err := io.ReadFull(s, got); err != nil {
				errs <- err
				return
			}
			if want := sha256.Sum256(payload); !bytes.Equal(got, want[:]) {
				errs <- fmt.Errorf("stream %d (%v, %d bytes): hash differs", i, prio, len(payload))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGlobalStreamLimitAndStats(t *testing.T) {
	a := newManager(t, func(c *peerlink.Config) {
		c.MaxOutboundStreams, c.ReservedStreams, c.FailFastStreams = 3, -1, true
	})
	b, c := newManager(t), newManager(t)
	withEcho(b, t)
	withEcho(c, t)
	connect(t, a, b)
	connect(t, a, c)
	var open []*mux.Stream
	for _, to := range []*peerlink.ConnectionManager{b, b, c} {
		s, err := a.OpenStream(ctxT(t), to.ID(), echoProto, mux.PriorityHigh)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if _, err := a.OpenStream(ctxT(t), c.ID(), echoProto, mux.PriorityCritical); !errors.Is(err, peerlink.ErrStreamLimit) {
		t.Fatalf("fourth stream across peers: %v, want ErrStreamLimit", err)
	}
	stats, err := a.StreamStats(b.ID())
	if err != nil {
		t.Fatal(err)
	}
	if stats.ByPriority[mux.PriorityHigh] != 2 || stats.Limit != peerlink.DefaultMaxStreamsPerPeer {
		t.Errorf("StreamStats = %+v, want 2 high streams and the default per-peer limit", stats)
	}
	if st := a.Statistics(); st.Streams.Outbound != 3 || st.Streams.ByPriority != [mux.NumPriorities]int{0, 0, 3, 0} ||
		st.Streams.ByDirection != [2][mux.NumPriorities]int{{}, {0, 0, 3, 0}} || st.Connections.Open != 2 {
		t.Errorf("Statistics streams %+v, connections %+v: want 3 high outbound streams on 2 links", st.Streams, st.Connections)
	}
	// Freed on both ends (EOF after Close), a global slot is free again.
	open[0].Close()
	if _, err := io.Copy(io.Discard, open[0]); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, c.ID(), []byte("slot back"))
	// Links closed under open streams leave none counted.
	for _, to := range []*peerlink.ConnectionManager{b, c} {
		if err := a.DisconnectAndWait(ctxT(t), to.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Statistics(); st.Streams.Open != 0 || st.Streams.ByPriority != [mux.NumPriorities]int{} || st.Connections.Open != 0 || st.Queue.Writes != 0 {
		t.Errorf("after disconnecting: streams %+v, connections %+v, queue %+v: want none", st.Streams, st.Connections, st.Queue)
	}
}

// OpenStream at the limit waits for a slot (the default), bounded by its
// context, and the freed slot goes to the highest priority waiting.
func TestOpenStreamWaitsForSlotByPriority(t *testing.T) {
	a := newManager(t, func(c *peerlink.Config) { c.MaxStreamsPerPeer, c.ReservedStreams = 1, -1 })
	b := newManager(t)
	withEcho(b, t)
	connect(t, a, b)
	first, err := a.OpenStream(ctxT(t), b.ID(), echoProto, mux.PriorityLow)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan mux.Priority, 2)
	for _, p := range []mux.Priority{mux.PriorityLow, mux.PriorityCritical} {
		go func() {
			s, err := a.OpenStream(ctxT(t), b.ID(), echoProto, p)
			if err != nil {
				t.Error(err)
				return
			}
			got <- p
			s.Close()
			_, _ = io.Copy(io.Discard, s)
		}()
	}
	// Both callers wait for the one slot: neither jumped the limit.
	pollUntil(t, "both callers wait for a slot", func() bool {
		st, err := a.StreamStats(b.ID())
		return err == nil && st.SlotWaiters == 2
	})
	select {
	case p := <-got:
		t.Fatalf("%v stream opened past the limit", p)
	default:
	}
	first.Close()
	if _, err := io.Copy(io.Discard, first); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p != mux.PriorityCritical {
		t.Fatalf("first slot went to %v, want critical", p)
	}
	<-got
}

// A long link gets a larger stream window and, within the memory budget,
// fewer streams.
func TestStreamWindowSizedFromRTT(t *testing.T) {
	link := faultnet.Link{Latency: 20 * time.Millisecond}
	mk := func() *peerlink.ConnectionManager {
		return newManager(t, func(c *peerlink.Config) {
			c.Transport = shapedTransport(peerlink.TCP, link)
		})
	}
	a, b := mk(), mk()
	connect(t, a, b)
	stats, err := a.StreamStats(b.ID())
	if err != nil {
		t.Fatal(err)
	}
	// The window is sized from the RTT the handshake measured (the
	// record's first sample): 2 × 12.5 MB/s × RTT, rounded up to 64 KiB;
	// about 1 MB at the link's 40 ms. The measurement itself is tested in
	// transport (TestHandshakeRTTTCPShaped); here it need only be
	// plausible, as a loaded machine adds to it.
	h, _ := a.PeerHistory(b.ID())
	if h.RTT.Samples != 1 {
		t.Fatalf("%d RTT samples, want the handshake's alone", h.RTT.Samples)
	}
	rtt := h.RTT.Last
	if rtt < 40*time.Millisecond || rtt > 100*time.Millisecond {
		t.Fatalf("handshake RTT %v over a 40 ms link", rtt)
	}
	bdp := float64(peerlink.DefaultTargetBandwidth) * rtt.Seconds()
	want := uint32(uint64(2*bdp+(64<<10)-1) / (64 << 10) * (64 << 10))
	if stats.Window != want || stats.Window < 1<<20 {
		t.Errorf("window %d KiB for a %v RTT, want %d KiB (twice the bandwidth-delay product)", stats.Window>>10, rtt, want>>10)
	}
	if want := int(peerlink.DefaultPeerMemoryBudget / mux.StreamMemory(stats.Window)); stats.Limit != want {
		t.Errorf("stream limit %d, want %d (the budget over what a stream can hold)", stats.Limit, want)
	}
}
