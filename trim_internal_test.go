package peerlink

import (
	"context"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// BenchmarkTrimDecisionManyLinks: one trim decision on a node with 10,000
// open links (in-memory transport): the snapshot of every link's score,
// tags, age and subnet, and the policy's choice of 2,000 victims, without
// closing them. Every score is recomputed, as at a trim, which comes at
// most once per silence period, long after most scores were cached.
// (trim.BenchmarkVictims10k is the policy alone.)
func BenchmarkTrimDecisionManyLinks(b *testing.B) {
	const links = 10_000
	network := transport.NewMemoryNetwork()
	cfg := DefaultConfig()
	cfg.Transport = MemoryTransport(network)
	cfg.ListenAddrs = []string{"hub"}
	cfg.Network = "peerlink-test"
	cfg.MaxConnections, cfg.MaxInboundConnections = 0, 0
	cfg.MaxPendingHandshakes = links
	cfg.DisableHealthMonitor = true
	cfg.Trim.HighWater = -1 // the benchmark decides; nothing trims on its own
	hub, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	sub := hub.Subscribe(links + 16)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var conns []transport.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range links {
		id, err := peer.GenerateIdentity()
		if err != nil {
			b.Fatal(err)
		}
		tr, err := network.NewTransport(transport.Config{Identity: id, Network: cfg.Network})
		if err != nil {
			b.Fatal(err)
		}
		c, err := tr.Dial(ctx, "hub", hub.ID())
		if err != nil {
			b.Fatalf("link %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%10 == 0 {
			_ = hub.TagPeer(id.ID(), "mesh", 20)
		}
	}
	for range links {
		<-sub.C
	}
	lim := *hub.limits()
	lim.Trim.HighWater, lim.Trim.LowWater = links, links-2000
	policy := lim.trimPolicy(true)
	now := hub.clock.Now().Add(time.Hour) // every link out of its grace period
	var victims []int
	b.ReportAllocs()
	for b.Loop() {
		cands, _ := hub.trimCandidates(now)
		victims = policy.Victims(now, cands, victims[:0])
	}
	if len(victims) != 2000 {
		b.Fatalf("%d victims, want 2000", len(victims))
	}
}

// Warming fills up to the high water mark, or MaxConnections without one.
func TestWarmRoom(t *testing.T) {
	for _, c := range []struct {
		max, high, open, want int
	}{
		{max: 0, high: -1, open: 5, want: -1},
		{max: 10, high: -1, open: 4, want: 6},
		{max: 10, high: 8, open: 4, want: 4},
		{max: 0, high: 8, open: 9, want: 0},
		{max: 10, high: 20, open: 12, want: 0},
	} {
		l := &ConnectionLimits{MaxConnections: c.max, Trim: TrimConfig{HighWater: c.high}}
		if got := warmRoom(l, c.open); got != c.want {
			t.Errorf("max %d, high %d, %d open: room %d, want %d", c.max, c.high, c.open, got, c.want)
		}
	}
}
