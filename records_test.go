package peerlink_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

func TestOneShotIdentitiesLeaveNoRecordsBehind(t *testing.T) {
	const visitors = 5000
	net := transport.NewMemoryNetwork()
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	hub := newManager(t, func(c *peerlink.Config) {
		c.Transport = peerlink.MemoryTransport(net)
		c.ListenAddrs = []string{"hub"}
		c.Clock = fake
		c.MaxConnections, c.MaxInboundConnections = 0, 0
		c.MaxPendingHandshakes = visitors
	})
	addr := hub.Addrs()[0]
	ctx := ctxT(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for range visitors {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, err := peer.GenerateIdentity()
			if err != nil {
				t.Error(err)
				return
			}
			tr, err := net.NewTransport(transport.Config{Identity: id, Network: "peerlink-test"})
			if err != nil {
				t.Error(err)
				return
			}
			c, err := tr.Dial(ctx, addr, hub.ID())
			if err != nil {
				t.Error(err)
				return
			}
			_ = c.Close()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The dialers have their verdicts before the hub registers their
	// links: wait until all of them have registered and closed, or a
	// late one would close after the clock moved, and be kept.
	pollUntil(t, "every visit is over", func() bool {
		return hub.Statistics().Connections.Opened[0] == visitors && hub.ConnectionCount() == 0
	})
	kept := hub.KnownPeers()
	t.Logf("records kept right after %d visits: %d", visitors, kept)
	if removed := hub.PruneRecords(); removed != 0 {
		t.Fatalf("PruneRecords removed %d records of peers seen just now; retention should keep them", removed)
	}
	fake.Advance(peerlink.DefaultRecordRetention)
	pollUntil(t, "every record is pruned", func() bool {
		hub.PruneRecords()
		return hub.KnownPeers() == 0
	})
}

func TestRecordOutlivesItsLinksAndRemovePeerForgets(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	for range 3 {
		connect(t, a, b)
		roundTrip(t, a, b.ID(), []byte("ping"))
		if err := a.Disconnect(b.ID()); err != nil {
			t.Fatal(err)
		}
	}
	h, ok := a.PeerHistory(b.ID())
	if !ok {
		t.Fatal("no record of a peer disconnected a moment ago")
	}
	if h.Links != 3 || h.Reconnects != 2 || h.BytesOut == 0 || h.RTT.Samples == 0 {
		t.Fatalf("history across three links: %+v", h)
	}
	if len(a.PeerAddrs(b.ID())) == 0 {
		t.Fatal("the address book lost the peer's address")
	}
	a.RemovePeer(b.ID())
	if _, ok := a.PeerHistory(b.ID()); ok || a.KnownPeers() != 0 {
		t.Fatalf("RemovePeer left a record behind (%d known)", a.KnownPeers())
	}
}

// reconnectWaits runs a manager whose persistent peer refuses every dial
// and returns the first n reconnect waits it chose, read from its log.
func reconnectWaits(t *testing.T, seed uint64, n int) []time.Duration {
	var mu sync.Mutex
	var buf bytes.Buffer
	m := newManager(t, func(c *peerlink.Config) {
		c.Rand = rand.NewPCG(seed, seed)
		c.Logger = zerolog.New(lockedWriter{&mu, &buf}).Level(zerolog.DebugLevel)
		c.Backoff = peerlink.Backoff{
			InitialInterval: time.Millisecond, Multiplier: 1.5, RandomizationFactor: 0.5,
			MaxInterval: 4 * time.Millisecond,
		}
		c.Breaker.FailureThreshold = 1 << 20 // keep the circuit (and its clock) out of it
	})
	if err := m.AddPersistentPeer(peer.AddrInfo{ID: newIdentity(t).ID(), Addrs: []string{reservedAddr(t)}}); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	pollUntil(t, "enough reconnect attempts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		waits = waits[:0]
		sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
		for sc.Scan() {
			var line struct {
				Message string  `json:"message"`
				Next    float64 `json:"next"`
				First   float64 `json:"first"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Message {
			case "reconnect scheduled":
				waits = append(waits, time.Duration(line.First*float64(time.Millisecond)))
			case "reconnect failed":
				waits = append(waits, time.Duration(line.Next*float64(time.Millisecond)))
			}
		}
		return len(waits) >= n
	})
	_ = m.Close()
	return waits[:n]
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestSameSeedSameChoices(t *testing.T) {
	first := reconnectWaits(t, 42, 12)
	second := reconnectWaits(t, 42, 12)
	other := reconnectWaits(t, 7, 12)
	if !slices.Equal(first, second) {
		t.Fatalf("two runs with seed 42 chose different waits:\n%v\n%v", first, second)
	}
	if slices.Equal(first, other) {
		t.Fatalf("seeds 42 and 7 chose the same waits: %v", first)
	}
}

// The stream of a handler is told when its link ends.
func TestStreamContextEndsWithTheLink(t *testing.T) {
	a, b := newManager(t), newManager(t)
	started, ended := make(chan struct{}), make(chan struct{})
	if err := b.SetStreamHandler("/test/ctx/1", func(s *mux.Stream) {
		close(started)
		<-s.Context().Done()
		close(ended)
	}); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	s, err := a.OpenStream(ctxT(t), b.ID(), "/test/ctx/1", mux.PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the handler never ran")
	}
	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(waitTimeout):
		t.Fatal("the handler's context was not cancelled when the remote closed the link")
	}
}
