package mux

import (
	"context"
	"testing"
	"time"
)

// sumFigures adds sessions' figures as a node would, one by one.
func sumFigures(ss ...*Session) Figures {
	var t Figures
	for _, s := range ss {
		f := s.Figures()
		t.Inbound += f.Inbound
		t.Outbound += f.Outbound
		for p, n := range f.ByPriority {
			t.ByPriority[p] += n
		}
		t.QueuedWrites += f.QueuedWrites
		t.QueuedBytes += f.QueuedBytes
		t.BytesIn += f.BytesIn
		t.BytesOut += f.BytesOut
		t.Streams += f.Streams
		t.LimitRefusals += f.LimitRefusals
		t.BudgetRefusals += f.BudgetRefusals
	}
	return t
}

// Sessions sharing a Totals: its figures are the sum of theirs while
// streams open, change priority, are refused and the links die with
// streams still held; once the sessions have ended, its gauges are back
// at zero and its counters keep what was done.
func TestTotalsSumSessions(t *testing.T) {
	var clients, servers Totals
	release := make(chan struct{})
	const pairs, limit = 3, 4
	var cs, ss []*Session
	var conns []interface{ Close() error }
	for range pairs {
		cc, sc := tcpPair(t)
		conns = append(conns, cc)
		ccfg, scfg := testConfig(), testConfig()
		ccfg.Totals, scfg.Totals = &clients, &servers
		scfg.MaxStreams = limit
		p := newPair(t, cc, sc, ccfg, scfg, nil, holdRoute(release, false))
		cs, ss = append(cs, p.client), append(ss, p.server)
	}
	var streams []*Stream
	for i, c := range cs {
		for j, prio := range []Priority{PriorityLow, PriorityHigh, PriorityCritical, PriorityNormal, PriorityNormal} {
			s, err := c.OpenStream(context.Background(), "hold", prio)
			if err != nil {
				t.Fatalf("pair %d stream %d: %v", i, j, err)
			}
			if _, err := s.Write(make([]byte, 1000*(j+1))); err != nil && j < limit {
				t.Fatalf("pair %d stream %d: %v", i, j, err)
			}
			streams = append(streams, s)
		}
	}
	// Each server holds limit streams and refuses the fifth.
	waitFor(t, 10*time.Second, "the servers' handlers and refusals", func() bool {
		f := servers.Figures()
		return f.Streams == pairs*limit && f.LimitRefusals == pairs
	})
	if err := streams[0].SetPriority(PriorityCritical); err != nil {
		t.Fatal(err)
	}
	check := func(what string, tot *Totals, sess []*Session) {
		t.Helper()
		got, want := tot.Figures(), sumFigures(sess...)
		got.Utilization = 0 // the sessions' own is exact, the totals' a step
		if got != want {
			t.Errorf("%s:\n totals %+v\n sum    %+v", what, got, want)
		}
	}
	// Bytes keep moving (window updates, the refused stream's reset), so
	// compare once both ends are quiet: a round of pings settles them.
	settle := func() {
		for _, s := range append(append([]*Session{}, cs...), ss...) {
			if s.Err() == nil {
				_, _ = s.PingContext(context.Background())
			}
		}
	}
	settle()
	check("servers", &servers, ss)
	check("clients", &clients, cs)
	if f := servers.Figures(); f.Inbound != pairs*limit || f.ByPriority != [NumPriorities]int{pairs, pairs, pairs, pairs} {
		t.Errorf("servers %+v: want %d inbound streams, one of each priority per pair (the fifth refused)", f, pairs*limit)
	}
	if out, in := servers.ByDirection(); out != [NumPriorities]int{} || in != [NumPriorities]int{pairs, pairs, pairs, pairs} {
		t.Errorf("servers by direction: outbound %v, inbound %v", out, in)
	}
	if out, in := clients.ByDirection(); in != [NumPriorities]int{} || out != [NumPriorities]int{pairs - 1, pairs * 2, pairs, pairs + 1} {
		// The refused streams count until the opener closes them.
		t.Errorf("clients by direction: outbound %v, inbound %v; want every stream opened, one low moved to critical", out, in)
	}

	// The links die under their streams.
	for _, c := range conns {
		c.Close()
	}
	for _, s := range append(append([]*Session{}, cs...), ss...) {
		<-s.Done()
	}
	close(release)
	for _, s := range append(append([]*Session{}, cs...), ss...) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.Wait(ctx); err != nil {
			t.Fatalf("session goroutines: %v", err)
		}
		cancel()
	}
	for _, tot := range []*Totals{&clients, &servers} {
		f := tot.Figures()
		if f.Inbound != 0 || f.Outbound != 0 || f.ByPriority != [NumPriorities]int{} || f.QueuedWrites != 0 || f.QueuedBytes != 0 || f.Utilization != 0 {
			t.Errorf("after the sessions ended: %+v, want no streams and empty queues", f)
		}
	}
	check("servers, ended", &servers, ss)
	check("clients, ended", &clients, cs)
}

// The fullest queue is reported to a sixteenth, and a queue leaving a
// step leaves it.
func TestTotalsQueueFill(t *testing.T) {
	var tot Totals
	const max = 1 << 20
	a, b := fillStep(max/2, max), fillStep(max/16-1, max)
	tot.addQueue(3, max/2, 0, a)
	tot.addQueue(1, max/16-1, 0, b)
	if f := tot.Figures(); f.Utilization != 0.5 || f.QueuedWrites != 4 || f.QueuedBytes != max/2+max/16-1 {
		t.Fatalf("%+v: want half full at most, 4 writes", f)
	}
	tot.addQueue(0, max/2, a, fillStep(max, max))
	if f := tot.Figures(); f.Utilization != 1 {
		t.Fatalf("utilization %v, want 1 (full)", f.Utilization)
	}
	tot.addQueue(-3, -max, fillStep(max, max), 0)
	tot.addQueue(-1, -(max/16 - 1), b, 0)
	if f := tot.Figures(); f != (Figures{}) {
		t.Fatalf("%+v: want all zero", f)
	}
	if fillStep(2*max, max) != fillSteps || fillStep(1, 0) != 0 {
		t.Fatal("fillStep out of range")
	}
}
