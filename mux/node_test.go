package mux

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryBudgetLimitsStreams(t *testing.T) {
	for _, tc := range []struct {
		max    int
		window uint32
		budget int64
		want   int
	}{
		{256, 256 << 10, 256 * StreamMemory(256<<10), 256},                    // the budget fits the limit exactly
		{256, 2496 << 10, 64 << 20, int((64 << 20) / StreamMemory(2496<<10))}, // a long link: fewer streams
		{0, 1 << 20, 64 << 20, int((64 << 20) / StreamMemory(1<<20))},         // unlimited streams still fit the budget
		{256, 16 << 20, 1 << 20, 1},                                           // never below one
		{256, 16 << 20, 0, 256},                                               // no budget
	} {
		c := testConfig()
		c.MaxStreams, c.StreamWindow, c.MemoryBudget = tc.max, tc.window, tc.budget
		n, err := c.normalize()
		if err != nil {
			t.Fatal(err)
		}
		if n.MaxStreams != tc.want {
			t.Errorf("MaxStreams %d, window %d, budget %d: limit %d, want %d", tc.max, tc.window, tc.budget, n.MaxStreams, tc.want)
		}
	}
	c := testConfig()
	c.MemoryBudget = -1
	if err := c.Validate(); err == nil {
		t.Error("a negative MemoryBudget is valid")
	}
}

// Past the node's memory budget, OpenStream fails with ErrMemoryBudget
// and inbound streams are refused (code 2); the bytes come back with the
// streams.
func TestNodeMemoryBudget(t *testing.T) {
	// Both ends share the node: each stream is charged at the opener and
	// at the acceptor (from its SYN).
	node := NewNodeLimits(0, 0, 0, 3*StreamMemory(DefaultStreamWindow))
	cfg := testConfig()
	cfg.Node = node
	cfg.FailFastStreams = true
	cc, sc := tcpPair(t)
	release := make(chan struct{})
	p := newPair(t, cc, sc, cfg, cfg, nil, holdRoute(release, false))
	var open []*Stream
	for range 2 {
		s, err := p.client.OpenStream(context.Background(), "hold", PriorityCritical)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	// The second SYN finds no memory at the acceptor.
	waitFor(t, 10*time.Second, "the acceptor to refuse the second stream", func() bool { return p.server.Stats().BudgetRefusals == 1 })
	if _, err := open[1].Read(make([]byte, 1)); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("inbound stream past the memory budget: %v, want a reset of code 2", err)
	}
	if _, err := p.client.OpenStream(context.Background(), "hold", PriorityCritical); !errors.Is(err, ErrMemoryBudget) || !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("open past the memory budget: %v, want ErrMemoryBudget and ErrStreamLimit", err)
	}
	close(release)
	for _, s := range open {
		s.Reset()
	}
	waitFor(t, 10*time.Second, "the memory to come back", func() bool { return node.MemoryInUse() == 0 })
}
