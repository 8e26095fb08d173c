package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestSlotPoolReserved(t *testing.T) {
	p := NewSlotPool(4, 1)
	for i := range 3 {
		if !p.TryAcquire(Priority(i % 2)) { // low, normal
			t.Fatalf("low/normal slot %d refused", i)
		}
	}
	if p.TryAcquire(PriorityNormal) || p.TryAcquire(PriorityLow) {
		t.Fatal("low/normal took the reserved slot")
	}
	if !p.TryAcquire(PriorityCritical) {
		t.Fatal("critical refused the reserved slot")
	}
	if p.TryAcquire(PriorityCritical) || p.InUse() != 4 {
		t.Fatalf("past the limit: in use %d", p.InUse())
	}
	if p.TryAcquire(Priority(9)) {
		t.Error("invalid priority took a slot")
	}
	if err := p.Acquire(context.Background(), Priority(9)); !errors.Is(err, ErrInvalidPriority) {
		t.Errorf("Acquire(9): %v", err)
	}
	for range 4 {
		p.Release()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Release with nothing taken did not panic")
			}
		}()
		p.Release()
	}()
	// Unlimited: only counts.
	u := NewSlotPool(0, 5)
	for range 1000 {
		if !u.TryAcquire(PriorityLow) {
			t.Fatal("unlimited pool refused")
		}
	}
	if u.InUse() != 1000 {
		t.Errorf("in use %d", u.InUse())
	}
	// reserved is clamped to max.
	if c := NewSlotPool(2, 5); c.TryAcquire(PriorityLow) || !c.TryAcquire(PriorityHigh) {
		t.Error("a pool reserving everything gave low a slot or refused high")
	}
}

// TestSlotPoolOrder: waiters are served highest priority first, in
// arrival order within a priority; a newcomer does not pass a waiter of
// its own priority; a cancelled waiter leaves no trace.
func TestSlotPoolOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewSlotPool(1, 0)
		if err := p.Acquire(context.Background(), PriorityLow); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		for i, prio := range []Priority{PriorityLow, PriorityNormal, PriorityCritical, PriorityNormal, PriorityHigh} {
			name := fmt.Sprintf("%v#%d", prio, i)
			wg.Go(func() {
				if err := p.Acquire(context.Background(), prio); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			})
			synctest.Wait()
		}
		if p.TryAcquire(PriorityCritical) {
			t.Error("a newcomer passed a waiting critical")
		}
		// A waiter that gives up.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.Acquire(ctx, PriorityCritical); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire past its deadline: %v", err)
		}
		for range 5 {
			p.Release()
			synctest.Wait()
		}
		wg.Wait()
		if got := fmt.Sprint(order); got != "[critical#2 high#4 normal#1 normal#3 low#0]" {
			t.Errorf("served in order %s", got)
		}
		if p.InUse() != 1 {
			t.Errorf("in use %d, want 1", p.InUse())
		}
	})
}

// TestReservedStreams: low and normal streams cannot take the slots kept
// for high and critical ones.
func TestReservedStreams(t *testing.T) {
	cc, sc := net.Pipe()
	cfg := testConfig()
	cfg.MaxStreams = 10 // 1 reserved
	cfg.FailFastStreams = true
	p := newPair(t, cc, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))
	ctx := context.Background()
	var low []*Stream
	for i := range 9 {
		s, err := p.client.OpenStream(ctx, "echo", Priority(i%2))
		if err != nil {
			t.Fatalf("low/normal stream %d: %v", i, err)
		}
		low = append(low, s)
	}
	if _, err := p.client.OpenStream(ctx, "echo", PriorityNormal); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("normal stream into the reserve: %v", err)
	}
	crit, err := p.client.OpenStream(ctx, "echo", PriorityCritical)
	if err != nil {
		t.Fatalf("critical stream refused the reserve: %v", err)
	}
	if _, err := p.client.OpenStream(ctx, "echo", PriorityCritical); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("11th stream: %v", err)
	}
	if got := p.client.StreamsByPriority(); got != [NumPriorities]int{5, 4, 0, 1} {
		t.Errorf("StreamsByPriority %v", got)
	}
	closeAndDrain(t, low[0])
	if _, err := p.client.OpenStream(ctx, "echo", PriorityLow); !errors.Is(err, ErrStreamLimit) {
		t.Errorf("low stream with 9 open: %v (the critical one holds the 9th)", err)
	}
	closeAndDrain(t, crit)
	s, err := p.client.OpenStream(ctx, "echo", PriorityLow)
	if err != nil {
		t.Errorf("low stream with 8 open: %v", err)
	} else {
		s.Close()
	}
	if got := p.client.Stats().OpenLimited; got != 3 {
		t.Errorf("OpenLimited %d, want 3", got)
	}
	for _, s := range low {
		s.Close()
	}
}

// TestOpenStreamWaits: at the limit, OpenStream waits for a slot, and
// waiters are served in priority order; ctx and the session's end bound
// the wait.
func TestOpenStreamWaits(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cc, sc := net.Pipe()
		cfg := testConfig()
		cfg.MaxStreams = 2
		cfg.ReservedStreams = -1
		p := newPair(t, cc, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler}))
		ctx := context.Background()
		var held []*Stream
		for range 2 {
			s, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, s)
		}
		var mu sync.Mutex
		var order []Priority
		var opened []*Stream
		var wg sync.WaitGroup
		for _, prio := range []Priority{PriorityLow, PriorityNormal, PriorityCritical, PriorityHigh} {
			wg.Go(func() {
				s, err := p.client.OpenStream(ctx, "echo", prio)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, prio)
				opened = append(opened, s)
				mu.Unlock()
			})
			synctest.Wait()
		}
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := p.client.OpenStream(tctx, "echo", PriorityCritical)
		if !errors.Is(err, ErrStreamLimit) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("open past its deadline: %v", err)
		}
		// Free the slots one by one; each goes to the best waiter, which
		// has opened its stream before the next is freed.
		for _, s := range held {
			s.Close()
			synctest.Wait()
		}
		for i := 0; i < 2; i++ {
			mu.Lock()
			s := opened[i]
			mu.Unlock()
			s.Close()
			synctest.Wait()
		}
		wg.Wait()
		if got := fmt.Sprint(order); got != "[critical high normal low]" {
			t.Errorf("slots went in order %s", got)
		}
		// A waiter is released by the session's end.
		done := make(chan error, 1)
		go func() {
			_, err := p.client.OpenStream(ctx, "echo", PriorityLow)
			done <- err
		}()
		synctest.Wait()
		p.client.Close()
		if err := <-done; !errors.Is(err, ErrSessionClosed) {
			t.Errorf("waiting open at session close: %v", err)
		}
		for _, s := range opened {
			s.Close()
		}
	})
}

// TestNodeSlots: node limits shared by sessions limit their streams
// together, outbound and inbound apart, and get every slot back.
func TestNodeSlots(t *testing.T) {
	node := NewNodeLimits(0, 3, 0, 0)
	global := node.Outbound
	hold := make(chan struct{})
	var sessions []pair
	for range 2 {
		cc, sc := net.Pipe()
		cfg := testConfig()
		cfg.Node = node
		sessions = append(sessions, newPair(t, cc, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{"echo": echoHandler})))
	}
	ctx := context.Background()
	var open []*Stream
	for _, i := range []int{0, 0, 1} {
		s, err := sessions[i].client.OpenStream(ctx, "echo", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if global.InUse() != 3 {
		t.Fatalf("global in use %d", global.InUse())
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := sessions[1].client.OpenStream(tctx, "echo", PriorityCritical); !errors.Is(err, ErrStreamLimit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open with the global pool full: %v", err)
	}
	if n := sessions[1].client.NumStreams(); n != 1 {
		t.Errorf("session slot kept after the global wait failed: %d streams", n)
	}
	got := make(chan *Stream, 1)
	go func() {
		s, err := sessions[1].client.OpenStream(ctx, "echo", PriorityLow)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	open[0].Close()
	open[0] = <-got
	if global.InUse() != 3 {
		t.Errorf("global in use %d after a slot changed hands", global.InUse())
	}
	for _, s := range open {
		closeAndDrain(t, s)
	}
	if global.InUse() != 0 {
		t.Errorf("global in use %d after every stream closed", global.InUse())
	}

	// Inbound: past the pool, streams are reset with code 2.
	cc, sc := net.Pipe()
	scfg := testConfig()
	scfg.Node = NewNodeLimits(1, 0, 0, 0)
	started := make(chan struct{}, 1)
	p := newPair(t, cc, sc, testConfig(), scfg, nil, routeOf(map[string]Handler{
		"hold": func(s *Stream) {
			started <- struct{}{}
			<-hold
		},
	}))
	defer close(hold)
	first, err := p.client.OpenStream(ctx, "hold", PriorityCritical)
	if err != nil {
		t.Fatal(err)
	}
	first.Write([]byte("a"))
	<-started
	second, err := p.client.OpenStream(ctx, "hold", PriorityCritical)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, ErrStreamLimit) {
		t.Errorf("inbound stream past the global pool: %v", err)
	}
	if st := p.server.Stats(); st.LimitRefusals != 1 || scfg.Node.Inbound.InUse() != 1 {
		t.Errorf("refusals %d, node inbound in use %d", st.LimitRefusals, scfg.Node.Inbound.InUse())
	}
	second.Close()
	first.Close()
}

// TestStreamsByPriorityInbound counts inbound streams by the priority in
// their headers.
func TestStreamsByPriorityInbound(t *testing.T) {
	cc, sc := net.Pipe()
	ready := make(chan struct{}, 4)
	hold := make(chan struct{})
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"x": func(s *Stream) {
			ready <- struct{}{}
			<-hold
			io.Copy(io.Discard, s)
		},
	}))
	for _, prio := range []Priority{PriorityHigh, PriorityHigh, PriorityLow, PriorityCritical} {
		s, err := p.client.OpenStream(context.Background(), "x", prio)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Write(nil)
	}
	for range 4 {
		<-ready
	}
	if got := p.server.StreamsByPriority(); got != [NumPriorities]int{1, 0, 2, 1} {
		t.Errorf("server StreamsByPriority %v", got)
	}
	close(hold)
}

// A session that ends while the application still holds streams gives
// their slots back to a shared pool: the pool outlives the session.
func TestSessionEndReturnsNodeSlots(t *testing.T) {
	node := NewNodeLimits(8, 8, 0, 1<<30)
	node.PeerInbound = 8
	inUse := func() int { return node.Inbound.InUse() + node.Outbound.InUse() }
	ccfg, scfg := testConfig(), testConfig()
	ccfg.Node = node
	scfg.Node = node // both ends count against it, as one node would
	hold := make(chan struct{})
	defer close(hold)
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, ccfg, scfg, nil, routeOf(map[string]Handler{
		"/hold": func(s *Stream) { <-hold },
	}))
	for range 3 {
		st, err := p.client.OpenStream(context.Background(), "/hold", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		// Never closed by the application.
	}
	waitFor(t, 10*time.Second, "both ends hold their streams' slots", func() bool { return inUse() == 6 })
	if got, want := node.MemoryInUse(), 6*StreamMemory(DefaultStreamWindow); got != want {
		t.Errorf("memory charged %d, want %d (6 streams)", got, want)
	}
	cc.Close() // the link dies
	<-p.client.Done()
	<-p.server.Done()
	waitFor(t, 10*time.Second, "every slot back in the pool", func() bool { return inUse() == 0 && node.MemoryInUse() == 0 })
}

// closeAndDrain closes s and reads it to the remote's EOF: the remote has
// then freed its slot, and so this end has freed s's.
func closeAndDrain(t *testing.T, s *Stream) {
	t.Helper()
	s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatalf("drain after Close: %v", err)
	}
}

// An opener's slot comes back when the remote has freed its own (its
// FIN), not at the opener's Close: with equal limits on both ends, a
// stream opened into a freed slot is never refused by the remote.
func TestOpenerSlotFollowsRemote(t *testing.T) {
	release := make(chan struct{})
	cfg := testConfig()
	cfg.MaxStreams, cfg.ReservedStreams, cfg.FailFastStreams = 1, -1, true
	cc, sc := net.Pipe()
	p := newPair(t, cc, sc, cfg, cfg, nil, routeOf(map[string]Handler{
		"/slow": func(s *Stream) {
			_, _ = io.Copy(io.Discard, s)
			<-release // the handler outlives the opener's Close
		},
		"echo": func(s *Stream) { _, _ = io.Copy(s, s) },
	}))
	first, err := p.client.OpenStream(context.Background(), "/slow", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	// The remote still runs the handler: the slot is still taken here.
	if _, err := p.client.OpenStream(context.Background(), "echo", PriorityNormal); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("open while the remote still holds the stream: %v, want ErrStreamLimit (locally)", err)
	}
	close(release)
	if _, err := io.Copy(io.Discard, first); err != nil { // the remote's FIN
		t.Fatal(err)
	}
	s, err := p.client.OpenStream(context.Background(), "echo", PriorityNormal)
	if err != nil {
		t.Fatalf("open after the remote freed the slot: %v", err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatalf("the remote refused a stream this end thought it had room for: %v", err)
	}
}
