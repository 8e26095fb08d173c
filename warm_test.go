package peerlink_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/warming"
)

func newID(t testing.TB) peer.ID {
	t.Helper()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.ID()
}

// isWarming matches the warming events of id.
func isWarming(id peer.ID) func(peerlink.Event) bool {
	return func(ev peerlink.Event) bool { return ev.Type == peerlink.EventWarming && ev.Peer == id }
}

// warmingOutcome matches the end of an attempt on any peer: warm, failed
// or called off.
func warmingOutcome(ev peerlink.Event) bool {
	return ev.Type == peerlink.EventWarming && ev.Warming.From == warming.Warming
}

// drain returns the events waiting on sub.
func drain(sub *peerlink.Subscription) []peerlink.Event {
	var evs []peerlink.Event
	for {
		select {
		case ev := <-sub.C:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// trace sums up id's connection and warming events.
func trace(evs []peerlink.Event, id peer.ID) []string {
	var out []string
	for _, ev := range evs {
		if ev.Peer != id {
			continue
		}
		s := ev.Type.String()
		if ev.Type == peerlink.EventWarming {
			s += " " + ev.Warming.String()
		}
		out = append(out, s)
	}
	return out
}

// peers starts n managers with the echo handler.
func peers(t testing.TB, n int) []*peerlink.ConnectionManager {
	t.Helper()
	ms := make([]*peerlink.ConnectionManager, n)
	for i := range ms {
		ms[i] = newManager(t)
		withEcho(ms[i], t)
	}
	return ms
}

func addAll(t testing.TB, m *peerlink.ConnectionManager, ps []*peerlink.ConnectionManager) []peer.ID {
	t.Helper()
	ids := make([]peer.ID, len(ps))
	for i, p := range ps {
		if err := m.AddPeer(p.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		ids[i] = p.ID()
	}
	return ids
}

// newHandManager starts a manager whose keep-warm rounds run when the
// test calls KeepWarm, or when a lost kept link or a failed attempt asks
// for one: its loop runs on a fake clock that the test does not move,
// and has had its first round (over an empty book) when this returns.
func newHandManager(t testing.TB, mods ...func(*peerlink.Config)) *peerlink.ConnectionManager {
	t.Helper()
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	m := newManager(t, append(mods, func(c *peerlink.Config) {
		c.Clock = fake
		c.Warming.Interval = time.Hour
	})...)
	// The pruner's timer and the loop's, armed after its first round.
	if err := fake.BlockUntil(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWarmConnectionsStatesAndEvents(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	dead := newID(t)
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := a.AddPeer(peer.AddrInfo{ID: dead, Addrs: []string{reservedAddr(t)}}); err != nil {
		t.Fatal(err)
	}
	if got := a.WarmingState(b.ID()); got != warming.Cold {
		t.Fatalf("before warming: %v, want cold", got)
	}
	sub := a.Subscribe(0)
	defer sub.Close()
	checks := a.Statistics().Health.Checks

	res, err := a.WarmConnections(ctxT(t), b.ID(), dead)
	if err == nil || !strings.Contains(err.Error(), dead.ShortString()) || strings.Contains(err.Error(), b.ID().ShortString()) {
		t.Fatalf("err = %v, want the unreachable peer's failure alone", err)
	}
	if len(res) != 2 || res[0].Peer != b.ID() || res[0].State != warming.Warm || res[0].RTT <= 0 || res[0].Err != nil {
		t.Fatalf("results[0] = %+v, want %s warm with an RTT", res[0], b.ID().ShortString())
	}
	if res[1].Peer != dead || res[1].State != warming.Failed || res[1].Err == nil {
		t.Fatalf("results[1] = %+v, want failed with its error", res[1])
	}
	if a.WarmingState(b.ID()) != warming.Warm || a.WarmingState(dead) != warming.Failed {
		t.Fatalf("states %v, %v; want warm, failed", a.WarmingState(b.ID()), a.WarmingState(dead))
	}
	if got := a.WarmPeers(); !slices.Equal(got, []peer.ID{b.ID()}) {
		t.Fatalf("WarmPeers = %v", got)
	}
	if got := a.Statistics().Warming; got != (peerlink.WarmingStatistics{Warm: 1, Failed: 1, Attempts: 2, Failures: 1}) {
		t.Errorf("Statistics().Warming = %+v, want one warm, one failed of two attempts", got)
	}
	// The ping is a health check: its RTT is in the record.
	if got := a.Statistics().Health.Checks; got != checks+1 {
		t.Errorf("health checks %d → %d, want one more", checks, got)
	}
	if h, _ := a.PeerHistory(b.ID()); h.RTT.Samples < 2 || h.RTT.Last != res[0].RTT {
		t.Errorf("history RTT %+v, want the ping's %v as the last of two samples or more", h.RTT, res[0].RTT)
	}

	// Every event was published before WarmConnections returned. b:
	// cold → warming, then its link, then warming → warm; dead: cold →
	// warming → failed, with the dial's error.
	evs := drain(sub)
	if got, want := trace(evs, b.ID()), []string{"warming cold → warming", "connected", "warming warming → warm"}; !slices.Equal(got, want) {
		t.Fatalf("b's events %q, want %q", got, want)
	}
	if got, want := trace(evs, dead), []string{"warming cold → warming", "warming warming → failed"}; !slices.Equal(got, want) {
		t.Fatalf("dead's events %q, want %q", got, want)
	}
	for _, ev := range evs {
		if ev.Peer == dead && ev.Warming.To == warming.Failed && (ev.Err == nil || !strings.Contains(ev.String(), "warming → failed: ")) {
			t.Fatalf("failure event without its error: %v", ev)
		}
	}

	// A warm peer is warm at once: no dial, no event.
	dials := a.Statistics().Dials.Attempts
	res, err = a.WarmConnections(ctxT(t), b.ID())
	if err != nil || res[0].State != warming.Warm {
		t.Fatalf("again: %+v, %v", res, err)
	}
	if got := a.Statistics().Dials.Attempts; got != dials {
		t.Errorf("warming a warm peer dialed: %d → %d", dials, got)
	}

	// Its link closing makes it cold, after its Disconnected.
	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, sub, func(ev peerlink.Event) bool { return ev.Peer == b.ID() })
	if ev.Type != peerlink.EventDisconnected {
		t.Fatalf("after Disconnect: %v, want the Disconnected first", ev)
	}
	if ev := waitEvent(t, sub, isWarming(b.ID())); ev.Warming != (warming.Transition{From: warming.Warm, To: warming.Cold}) {
		t.Fatalf("after Disconnect: %v, want warm → cold", ev)
	}
	if got := a.WarmingState(b.ID()); got != warming.Cold {
		t.Fatalf("after Disconnect: %v", got)
	}
	if got := a.Statistics().Warming; got != (peerlink.WarmingStatistics{Failed: 1, Attempts: 2, Failures: 1}) {
		t.Errorf("Statistics().Warming after Disconnect = %+v, want none warm, one failed", got)
	}
	// Forgetting the failed peer forgets its state.
	a.RemovePeer(dead)
	if got := a.Statistics().Warming; got.Failed != 0 {
		t.Errorf("Statistics().Warming after RemovePeer = %+v, want none failed", got)
	}
}

// A peer already connected (it dialed us) is warmed by a ping alone.
func TestWarmConnectionsPingsALinkWithoutDialing(t *testing.T) {
	a, b := newManager(t), newManager(t)
	sub := a.Subscribe(0)
	defer sub.Close()
	connect(t, b, a)
	waitEvent(t, sub, func(ev peerlink.Event) bool { return ev.Type == peerlink.EventConnected })
	res, err := a.WarmConnections(ctxT(t), b.ID())
	if err != nil || res[0].State != warming.Warm {
		t.Fatalf("%+v, %v", res, err)
	}
	if got := a.Statistics().Dials.Attempts; got != 0 {
		t.Fatalf("%d dials to warm a connected peer", got)
	}
}

// Two peers that dial each other while one warms the other keep one link
// (the tie-break); the warming survives the link it first pinged being
// replaced.
func TestWarmConnectionsSurvivesCrossedDials(t *testing.T) {
	for range 15 {
		a, b := newManager(t), newManager(t)
		if err := a.AddPeer(b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { connect(t, b, a) })
		res, err := a.WarmConnections(ctxT(t), b.ID())
		wg.Wait()
		if err != nil || res[0].State != warming.Warm {
			t.Fatalf("%+v, %v", res, err)
		}
	}
}

func TestWarmConnectionsBadInput(t *testing.T) {
	a := newManager(t)
	unknown := newID(t)
	res, err := a.WarmConnections(ctxT(t), peer.ID{}, a.ID(), unknown)
	for i, want := range []error{peerlink.ErrInvalidPeer, peerlink.ErrDialSelf, peerlink.ErrNoAddresses} {
		if !errors.Is(res[i].Err, want) || res[i].State != warming.Cold {
			t.Errorf("results[%d] = %+v, want cold with %v", i, res[i], want)
		}
		if !errors.Is(err, want) {
			t.Errorf("err %v does not wrap %v", err, want)
		}
	}
	if res, err := a.WarmConnections(ctxT(t)); err != nil || len(res) != 0 {
		t.Errorf("no IDs: %v, %v", res, err)
	}
	// A context already over starts nothing.
	b := newManager(t)
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err = a.WarmConnections(ctx, b.ID())
	if !errors.Is(err, context.Canceled) || res[0].State != warming.Cold || a.Statistics().Dials.Attempts != 0 {
		t.Errorf("cancelled: %+v, %v, %d dials; want cold, nothing dialed", res, err, a.Statistics().Dials.Attempts)
	}
	// An ID given twice is warmed once, and both results say so.
	sub := a.Subscribe(0)
	defer sub.Close()
	res, err = a.WarmConnections(ctxT(t), b.ID(), b.ID())
	if err != nil || res[0].State != warming.Warm || res[1].State != warming.Warm {
		t.Fatalf("twice: %+v, %v", res, err)
	}
	if got := trace(drain(sub), b.ID()); !slices.Equal(got, []string{"warming cold → warming", "connected", "warming warming → warm"}) {
		t.Errorf("twice: events %q, want one attempt", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WarmConnections(ctxT(t), unknown); !errors.Is(err, peerlink.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// At most MaxConcurrent attempts run at once, and two callers warming the
// same peers share one attempt per peer.
func TestWarmConnectionsBoundAndShare(t *testing.T) {
	const n, bound = 8, 2
	a := newManager(t, func(c *peerlink.Config) { c.Warming.MaxConcurrent = bound })
	ids := addAll(t, a, peers(t, n))
	sub := a.Subscribe(0)
	defer sub.Close()

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := a.WarmConnections(ctxT(t), ids...)
			if err != nil {
				t.Error(err)
			}
			for _, r := range res {
				if r.State != warming.Warm {
					t.Errorf("%+v", r)
				}
			}
		})
	}
	wg.Wait()
	starts, underWay, most := map[peer.ID]int{}, 0, 0
	for warmed := 0; warmed < n; {
		ev := waitEvent(t, sub, func(ev peerlink.Event) bool { return ev.Type == peerlink.EventWarming })
		switch ev.Warming.To {
		case warming.Warming:
			starts[ev.Peer]++
			underWay++
			most = max(most, underWay)
		case warming.Warm:
			underWay--
			warmed++
		default:
			t.Fatalf("unexpected %v", ev)
		}
	}
	if most > bound {
		t.Errorf("%d attempts at once, want at most %d", most, bound)
	}
	for _, id := range ids {
		if starts[id] != 1 {
			t.Errorf("%s warmed %d times, want once", id.ShortString(), starts[id])
		}
	}
}

// The loop keeps MinWarm peers warm, and (without exploration, which
// tries every newcomer once) no more.
func TestKeepWarmReachesMinWarm(t *testing.T) {
	a := newManager(t, func(c *peerlink.Config) {
		c.Warming.MinWarm = 3
		c.Warming.ExploreShare = -1
		c.Warming.Interval = 20 * time.Millisecond
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	addAll(t, a, peers(t, 6))
	waitUntil(t, sub, "3 peers are warm", func() bool { return len(a.WarmPeers()) == 3 })
	// A few rounds more change nothing: the kept set is warm.
	for range 3 {
		a.KeepWarm()
	}
	if got := a.ConnectionCount(); got != 3 {
		t.Fatalf("%d links with 3 kept warm, want 3", got)
	}
	if kept, warm := a.KeptWarmPeers(), a.WarmPeers(); !slices.Equal(kept, warm) {
		t.Fatalf("kept %v, warm %v: want the same three", kept, warm)
	}
	for _, id := range a.WarmPeers() {
		if a.Status(id) != peer.StatusConnected {
			t.Errorf("warm peer %s not connected", id.ShortString())
		}
	}
}

// A kept peer that dies is replaced at once: its link's end starts a
// round, its redial fails, and the next best peer is warmed.
func TestKeepWarmReplacesAPeerThatDies(t *testing.T) {
	a := newHandManager(t, func(c *peerlink.Config) {
		c.Warming.MinWarm = 2
		c.Warming.ExploreShare = -1
	})
	ps := peers(t, 4)
	addAll(t, a, ps)
	sub := a.Subscribe(0)
	defer sub.Close()
	a.KeepWarm()
	waitUntil(t, sub, "2 peers are warm", func() bool { return len(a.WarmPeers()) == 2 })
	victim := a.WarmPeers()[0]
	for _, p := range ps {
		if p.ID() == victim {
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitUntil(t, sub, "another peer replaced the dead one", func() bool {
		warm := a.WarmPeers()
		return len(warm) == 2 && !slices.Contains(warm, victim)
	})
	if got := a.WarmingState(victim); got != warming.Failed {
		t.Errorf("the dead peer is %v, want failed (its redial was refused)", got)
	}
}

// With MinWarm 4 and one slot in four for exploration, each round warms
// one newcomer: 3 newcomers are all tried within 3 rounds, though the
// peers already known are better than a newcomer's neutral score.
func TestKeepWarmExploresNewcomers(t *testing.T) {
	a := newHandManager(t, func(c *peerlink.Config) {
		c.Warming.MinWarm = 4
		c.Rand = rand.NewPCG(7, 7)
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	addAll(t, a, peers(t, 4))
	n := a.KeepWarm()
	for range n {
		waitEvent(t, sub, warmingOutcome)
	}
	if got := len(a.WarmPeers()); got != 4 {
		t.Fatalf("%d warm after the first round, want 4", got)
	}

	fresh := addAll(t, a, peers(t, 3))
	explored := map[peer.ID]bool{}
	for round := 1; round <= 3; round++ {
		n := a.KeepWarm()
		for range n {
			ev := waitEvent(t, sub, warmingOutcome)
			if ev.Warming.To != warming.Warm {
				t.Fatalf("round %d: %v", round, ev)
			}
			if slices.Contains(fresh, ev.Peer) {
				explored[ev.Peer] = true
			}
		}
		if len(explored) != round {
			t.Fatalf("after round %d, %d newcomers explored; want one a round", round, len(explored))
		}
	}
}

// Warming opens no link past MaxConnections: with two of three links
// taken (by peers in the address book that dialed us), it warms the two
// connected peers by a ping and dials one.
func TestKeepWarmRespectsMaxConnections(t *testing.T) {
	a := newHandManager(t, func(c *peerlink.Config) {
		c.MaxConnections, c.MaxInboundConnections = 3, 3
		c.Warming.MinWarm = 3
		c.Warming.ExploreShare = -1
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	inbound := peers(t, 2)
	addAll(t, a, inbound)
	for _, p := range inbound {
		connect(t, p, a)
	}
	waitUntil(t, sub, "2 inbound links", func() bool { return len(a.Peers()) == 2 })
	addAll(t, a, peers(t, 4))
	for range 3 {
		n := a.KeepWarm()
		for range n {
			waitEvent(t, sub, warmingOutcome)
		}
	}
	if got := len(a.WarmPeers()); got != 3 {
		t.Fatalf("%d warm, want 3", got)
	}
	st := a.Statistics()
	if st.Connections.Open != 3 || st.Dials.Attempts != 1 || st.Dials.Errors[peerlink.DialErrorLimit] != 0 {
		t.Fatalf("links %d, dials %d (%v): want 3 links and one dial, none refused by the limit",
			st.Connections.Open, st.Dials.Attempts, st.Dials.Errors)
	}
	for _, p := range inbound {
		if a.WarmingState(p.ID()) != warming.Warm {
			t.Errorf("inbound peer %s is %v", p.ID().ShortString(), a.WarmingState(p.ID()))
		}
	}
}

// When the streams fill the links past the threshold, extras are warmed,
// enough for the load and never more than MaxExtra.
func TestKeepWarmScalesWithStreams(t *testing.T) {
	a := newHandManager(t, func(c *peerlink.Config) {
		c.MaxStreamsPerPeer, c.ReservedStreams = 4, -1
		c.Warming.MinWarm = 1
		c.Warming.MaxExtra = 2
		c.Warming.ScaleThreshold = 0.5
		c.Warming.ExploreShare = -1
	})
	ps := peers(t, 5)
	for _, p := range ps {
		if err := p.SetStreamHandler("/test/hold/1", func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
			t.Fatal(err)
		}
	}
	addAll(t, a, ps)
	sub := a.Subscribe(0)
	defer sub.Close()
	round := func() int {
		n := a.KeepWarm()
		for range n {
			if ev := waitEvent(t, sub, warmingOutcome); ev.Warming.To != warming.Warm {
				t.Fatalf("%v", ev)
			}
		}
		return n
	}
	hold := func(id peer.ID, n int) {
		for range n {
			s, err := a.OpenStream(peerlink.WithNoDial(ctxT(t)), id, "/test/hold/1", mux.PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
		}
	}
	if n := round(); n != 1 {
		t.Fatalf("first round started %d, want 1", n)
	}
	first := a.WarmPeers()[0]
	hold(first, 3) // 3 of 4: 0.75, past 0.5; 2 links bring it to 0.375
	if n := round(); n != 1 || len(a.WarmPeers()) != 2 {
		t.Fatalf("at 0.75: started %d, %d warm; want one extra", n, len(a.WarmPeers()))
	}
	if n := round(); n != 0 {
		t.Fatalf("at 0.375: started %d, want none", n)
	}
	var extra peer.ID
	for _, id := range a.WarmPeers() {
		if id != first {
			extra = id
		}
	}
	hold(extra, 4) // 7 of 8: ⌈7 / 2⌉ = 4 links wanted, but MaxExtra is 2
	if n := round(); n != 1 || len(a.WarmPeers()) != 3 {
		t.Fatalf("at 0.875: started %d, %d warm; want one more extra (MaxExtra 2)", n, len(a.WarmPeers()))
	}
	if n := round(); n != 0 || a.ConnectionCount() != 3 {
		t.Fatalf("at MaxExtra: started %d, %d links; want none more", n, a.ConnectionCount())
	}
	// One kept, the two others extras: not kept, so idle expiry may close
	// them once the load is gone.
	if kept := a.KeptWarmPeers(); len(kept) != 1 {
		t.Fatalf("kept %v, want MinWarm 1 peer", kept)
	}
}

// Peers that only dialed us (no address to dial them on) are not
// candidates: inbound dialers cannot make themselves kept.
func TestKeepWarmIgnoresInboundOnlyPeers(t *testing.T) {
	a := newHandManager(t, func(c *peerlink.Config) {
		c.Warming.MinWarm = 2
		c.Warming.ExploreShare = -1
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	for _, p := range peers(t, 3) {
		connect(t, p, a)
	}
	waitUntil(t, sub, "3 inbound links", func() bool { return len(a.Peers()) == 3 })
	book := addAll(t, a, peers(t, 2))
	for range a.KeepWarm() {
		waitEvent(t, sub, warmingOutcome)
	}
	if kept := a.KeptWarmPeers(); !slices.Equal(kept, sortedIDs(book)) {
		t.Fatalf("kept %v, want the two peers of the address book %v", kept, sortedIDs(book))
	}
}

// The loop's rounds run on the manager's clock: a peer added after the
// first round is warmed when the fake clock reaches the next one.
func TestKeepWarmRoundsOnTheClock(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.Warming.MinWarm = 1
		c.Warming.Interval = 30 * time.Second
	})
	// The pruner's timer and the loop's, which it arms after its first
	// round (over an empty book).
	if err := fake.BlockUntil(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	b := newManager(t)
	sub := a.Subscribe(0)
	defer sub.Close()
	if err := a.AddPeer(b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	fake.Advance(29 * time.Second)
	if got := drain(sub); len(got) != 0 {
		t.Fatalf("events before the round is due: %v", got)
	}
	fake.Advance(time.Second)
	if ev := waitEvent(t, sub, isWarming(b.ID())); ev.Warming.To != warming.Warming {
		t.Fatalf("%v", ev)
	}
	if ev := waitEvent(t, sub, isWarming(b.ID())); ev.Warming.To != warming.Warm {
		t.Fatalf("%v", ev)
	}
}

func TestKeepWarmLoopStopsOnClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	start := func(mod func(*peerlink.Config)) *peerlink.ConnectionManager {
		cfg := peerlink.DefaultConfig()
		cfg.ListenAddrs = []string{"127.0.0.1:0"}
		if mod != nil {
			mod(&cfg)
		}
		m, err := peerlink.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := start(func(c *peerlink.Config) {
		c.Warming.MinWarm = 2
		c.Warming.Interval = time.Millisecond // busy: Close must stop it mid-round
	})
	b, c := start(nil), start(nil)
	sub := a.Subscribe(0)
	for _, p := range []*peerlink.ConnectionManager{b, c} {
		if err := a.AddPeer(p.AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, sub, "2 peers are warm", func() bool { return len(a.WarmPeers()) == 2 })
	for _, m := range []*peerlink.ConnectionManager{a, b, c} {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.KeepWarm(); n != 0 {
		t.Errorf("KeepWarm after Close started %d", n)
	}
}

func TestWarmingConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*peerlink.Config)
	}{
		{"Warming.MinWarm", func(c *peerlink.Config) { c.Warming.MinWarm = -1 }},
		{"Warming.MinWarm", func(c *peerlink.Config) { c.MaxConnections, c.MaxInboundConnections, c.Warming.MinWarm = 10, 10, 11 }},
		{"Warming.Interval", func(c *peerlink.Config) { c.Warming.Interval = -time.Second }},
		{"Warming.ExploreShare", func(c *peerlink.Config) { c.Warming.ExploreShare = 2 }},
		{"Warming.MaxExtra", func(c *peerlink.Config) { c.Warming.MaxExtra = -1 }},
		{"Warming.ScaleThreshold", func(c *peerlink.Config) { c.Warming.ScaleThreshold = 1.5 }},
		{"Warming.MaxConcurrent", func(c *peerlink.Config) { c.Warming.MaxConcurrent = -3 }},
		{"Warming.PingTimeout", func(c *peerlink.Config) { c.Warming.PingTimeout = -1 }},
	} {
		cfg := peerlink.DefaultConfig()
		tc.mod(&cfg)
		_, err := peerlink.New(cfg)
		if !errors.Is(err, peerlink.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming it", tc.field, err)
		}
	}
	// A zero WarmingConfig takes the defaults.
	cfg := peerlink.DefaultConfig()
	cfg.Warming = peerlink.WarmingConfig{}
	m, err := peerlink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkWarm50 is the time to warm 50 peers on loopback TLS: 50 dials,
// handshakes and pings, one at a time, 16 at once (the default) and all
// at once.
func BenchmarkWarm50(b *testing.B) {
	const n = 50
	ps := make([]*peerlink.ConnectionManager, n)
	for i := range ps {
		ps[i] = newManager(b)
	}
	for _, conc := range []int{1, 16, 50} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			a := newManager(b, func(c *peerlink.Config) { c.Warming.MaxConcurrent = conc })
			ids := addAll(b, a, ps)
			ctx := context.Background()
			var total time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if _, err := a.WarmConnections(ctx, ids...); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				for _, id := range ids {
					if err := a.DisconnectAndWait(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/warm50")
		})
	}
}

// BenchmarkKeepWarmRound is one keep-warm round of a node that knows
// 10,000 peers and keeps 8 of them warm (in-memory transport): the pass
// over the records, the plan, nothing to start.
func BenchmarkKeepWarmRound(b *testing.B) {
	const known, kept = 10_000, 8
	net := transport.NewMemoryNetwork()
	onNet := func(name string) func(*peerlink.Config) {
		return func(c *peerlink.Config) {
			c.Transport = peerlink.MemoryTransport(net)
			c.ListenAddrs = []string{name}
		}
	}
	a := newManager(b, onNet("a"), func(c *peerlink.Config) {
		c.Warming.MinWarm = kept
		c.Warming.ExploreShare = -1
		c.Warming.Interval = time.Hour
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	for i := range kept {
		p := newManager(b, onNet("p"+strconv.Itoa(i)))
		if err := a.AddPeer(p.AddrInfo()); err != nil {
			b.Fatal(err)
		}
	}
	a.KeepWarm()
	waitUntil(b, sub, "the kept peers are warm", func() bool { return len(a.WarmPeers()) == kept })
	// The others: never tried, so (exploration off) their neutral score
	// keeps them below the kept peers.
	for i := range known - kept {
		if err := a.AddPeer(peer.AddrInfo{ID: newID(b), Addrs: []string{"nobody-" + strconv.Itoa(i)}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := a.KeepWarm(); n != 0 {
			b.Fatalf("started %d", n)
		}
	}
}

// The peers kept warm are the node's own choice: idle expiry leaves their
// links alone while an explored or extra peer's idle link goes. Limits
// shrunk at run time trim by score, kept peers too, and warming fills
// back no further than the high water mark; grown, they let warming fill.
func TestKeptWarmPeersIdleExpiryAndLimits(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Warming.MinWarm = 3
		c.Warming.ExploreShare = -1
		c.Warming.Interval = time.Hour // rounds only when asked
		c.Idle = peerlink.IdleConfig{Timeout: 5 * time.Minute, CleanupInterval: -1}
	})
	sub := a.Subscribe(0)
	defer sub.Close()
	ps := peers(t, 5)
	addAll(t, a, ps)
	a.KeepWarm()
	waitUntil(t, sub, "3 peers are warm", func() bool { return len(a.WarmPeers()) == 3 })
	kept := a.KeptWarmPeers()
	// Two more links the node did not choose to keep.
	for _, p := range ps {
		if !slices.Contains(kept, p.ID()) {
			connect(t, a, p)
		}
	}
	fake.Advance(6 * time.Minute)
	if n := a.EvictIdle(); n != 2 {
		t.Fatalf("EvictIdle = %d, want the 2 links not kept warm", n)
	}
	if got := a.Peers(); !slices.Equal(got, sortedIDs(kept)) {
		t.Fatalf("peers after idle expiry %v, want the kept ones %v", got, sortedIDs(kept))
	}

	// Shrunk to a high water mark of 2: the worst kept peer goes, and a
	// round warms nothing back past the mark.
	worst := kept[0]
	for _, id := range kept[1:] {
		a.RecordSuccess(id, time.Millisecond)
	}
	a.RecordError(worst, errors.New("useless"))
	if err := a.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 10, Trim: peerlink.TrimConfig{HighWater: 2, LowWater: 1, GracePeriod: -1, MinOutbound: -1}}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, sub, func(e peerlink.Event) bool {
		return e.Type == peerlink.EventDisconnected && e.Reason != peerlink.ReasonIdle
	})
	if ev.Reason != peerlink.ReasonTrimmed || ev.Peer != worst {
		t.Fatalf("after shrinking: %v, want the worst kept peer trimmed", ev)
	}
	pollUntil(t, "the trim to end", func() bool { return a.ConnectionCount() <= 2 })
	for range 3 {
		for range a.KeepWarm() {
			waitEvent(t, sub, warmingOutcome)
		}
	}
	if got := a.ConnectionCount(); got > 2 {
		t.Fatalf("%d links after warming rounds under a high water mark of 2", got)
	}

	// Grown: warming fills the kept set again.
	if err := a.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 10}); err != nil {
		t.Fatal(err)
	}
	a.KeepWarm()
	waitUntil(t, sub, "3 peers warm again", func() bool { return len(a.WarmPeers()) == 3 })
}
