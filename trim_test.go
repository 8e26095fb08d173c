package peerlink_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// trimmed waits for n EventDisconnected with ReasonTrimmed on sub and
// returns them, in order. Any other disconnection fails the test.
func trimmed(t testing.TB, sub *peerlink.Subscription, n int) []peerlink.Event {
	t.Helper()
	var evs []peerlink.Event
	for len(evs) < n {
		ev := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
		if ev.Reason != peerlink.ReasonTrimmed {
			t.Fatalf("link to %s closed: %v, want only trims", ev.Peer.ShortString(), ev)
		}
		evs = append(evs, ev)
	}
	return evs
}

// peersOf returns the events' peers.
func peersOf(evs []peerlink.Event) []peer.ID {
	ids := make([]peer.ID, len(evs))
	for i, ev := range evs {
		ids[i] = ev.Peer
	}
	return ids
}

// connectedTo waits until m has registered n links (an inbound link
// registers a moment after its dialer's Connect returns).
func connectedTo(t testing.TB, m *peerlink.ConnectionManager, sub *peerlink.Subscription, n int) {
	t.Helper()
	// ConnectionCount counts links from admission; Peers, once registered.
	waitUntil(t, sub, "the links are registered", func() bool { return len(m.Peers()) >= n })
}

func idsOf(ms []*peerlink.ConnectionManager) []peer.ID {
	out := make([]peer.ID, len(ms))
	for i, m := range ms {
		out[i] = m.ID()
	}
	slices.SortFunc(out, peer.ID.Compare)
	return out
}

func sortedIDs(ids []peer.ID) []peer.ID {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

var loopbackExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// hubWithPeers returns a manager configured by mod, with n peers linked
// to it (each dialed it), and a subscription to its events taken first.
func hubWithPeers(t testing.TB, n int, mod func(*peerlink.Config)) (*peerlink.ConnectionManager, *peerlink.Subscription, []*peerlink.ConnectionManager) {
	t.Helper()
	hub := newManager(t, func(c *peerlink.Config) { c.LimitExempt = loopbackExempt }, mod)
	sub := hub.Subscribe(256)
	peers := make([]*peerlink.ConnectionManager, n)
	for i := range peers {
		peers[i] = newManager(t)
		connect(t, peers[i], hub)
	}
	connectedTo(t, hub, sub, n)
	return hub, sub, peers
}

func TestTrimOpenConnsClosesLowestScoresFirst(t *testing.T) {
	a, sub, peers := hubWithPeers(t, 6, func(c *peerlink.Config) {
		c.Trim = peerlink.TrimConfig{HighWater: 20, LowWater: 3, GracePeriod: -1}
	})
	badSide := peers[3].Subscribe(16)
	good, bad := peers[:3], peers[3:]
	for _, p := range good {
		for range 5 {
			a.RecordSuccess(p.ID(), 5*time.Millisecond)
		}
	}
	for _, p := range bad {
		a.RecordError(p.ID(), errors.New("invalid block"))
	}
	n, err := a.TrimOpenConns(ctxT(t))
	if err != nil || n != 3 {
		t.Fatalf("TrimOpenConns = %d, %v; want 3 closed", n, err)
	}
	// The closes were started and published before TrimOpenConns returned.
	if got := a.ConnectionCount(); got != 3 {
		t.Fatalf("ConnectionCount = %d right after the trim, want 3", got)
	}
	if got, want := sortedIDs(peersOf(trimmed(t, sub, 3))), idsOf(bad); !slices.Equal(got, want) {
		t.Fatalf("trimmed %v, want the three with errors %v", got, want)
	}
	for _, p := range good {
		if st := a.Status(p.ID()); st != peer.StatusConnected {
			t.Errorf("good peer %s: %v", p.ID().ShortString(), st)
		}
	}
	// The remote sees its link closed.
	waitEvent(t, badSide, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	if n, err := a.TrimOpenConns(ctxT(t)); n != 0 || err != nil {
		t.Fatalf("a second TrimOpenConns at the low water mark = %d, %v; want 0", n, err)
	}
	if st := a.Statistics(); st.Connections.Closed[peerlink.ReasonTrimmed.String()] != 3 {
		t.Errorf("Statistics closed by reason: %v, want 3 trimmed", st.Connections.Closed)
	}
}

// TestTrimPastHighWaterByScoreAndTags: the link that takes the count past
// the high water mark starts a trim, in the manager's goroutine, down to
// the low water mark: the peers with errors go first, and a tag keeps a
// peer ahead of an untagged one of equal quality.
func TestTrimPastHighWaterByScoreAndTags(t *testing.T) {
	a, sub, peers := hubWithPeers(t, 4, func(c *peerlink.Config) {
		c.Trim = peerlink.TrimConfig{HighWater: 4, LowWater: 2, GracePeriod: -1}
	})
	a.RecordError(peers[0].ID(), errors.New("timeout"))
	a.RecordError(peers[1].ID(), errors.New("timeout"))
	for _, p := range peers[2:] {
		if err := a.TagPeer(p.ID(), "mesh", 50); err != nil {
			t.Fatal(err)
		}
	}
	last := newManager(t) // untagged, no history: between the two
	connect(t, last, a)
	got := peersOf(trimmed(t, sub, 3))
	if want := []peer.ID{peers[0].ID(), peers[1].ID()}; !slices.Equal(sortedIDs(got[:2]), sortedIDs(want)) || got[2] != last.ID() {
		t.Fatalf("trimmed %v, want the two with errors, then the untagged newcomer", got)
	}
	if got, want := a.Peers(), idsOf(peers[2:]); !slices.Equal(got, want) {
		t.Fatalf("peers left %v, want the tagged ones %v", got, want)
	}
	info, _ := a.TagInfo(peers[2].ID())
	if info.Value != 50 || info.Tags["mesh"] != 50 || info.Priority < 50 {
		t.Errorf("TagInfo = %+v", info)
	}
}

// TestTrimSparesProtectedPersistentAndYoung: a trim that wants to close
// every link closes neither a protected peer, nor a persistent one, nor a
// link in its grace period.
func TestTrimSparesProtectedPersistentAndYoung(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Idle.Timeout = -1
		c.Trim = peerlink.TrimConfig{HighWater: 5, LowWater: 1, GracePeriod: time.Minute, MinOutbound: -1}
	})
	sub := a.Subscribe(64)
	prot, pers := newManager(t), newManager(t)
	old := []*peerlink.ConnectionManager{newManager(t), newManager(t), newManager(t)}
	for _, p := range append([]*peerlink.ConnectionManager{prot, pers}, old...) {
		connect(t, p, a)
	}
	connectedTo(t, a, sub, 5)
	if err := a.Protect(prot.ID(), "validator"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddPersistentPeer(pers.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*peerlink.ConnectionManager{prot, pers} {
		a.RecordError(p.ID(), errors.New("slow")) // the worst scores: only the exemptions save them
	}
	fake.Advance(2 * time.Minute)
	young := newManager(t)
	connect(t, young, a) // the sixth link: past the high water mark
	if got, want := sortedIDs(peersOf(trimmed(t, sub, 3))), idsOf(old); !slices.Equal(got, want) {
		t.Fatalf("trimmed %v, want the three unprotected links out of their grace period %v", got, want)
	}
	if got, want := a.Peers(), idsOf([]*peerlink.ConnectionManager{prot, pers, young}); !slices.Equal(got, want) {
		t.Fatalf("peers left %v, want %v", got, want)
	}
	if !a.IsProtected(prot.ID(), "validator") || !a.IsProtected(prot.ID(), "") || a.IsProtected(prot.ID(), "other") {
		t.Error("IsProtected is wrong")
	}
	// Unprotected, it goes at the next trim like any other.
	if a.Unprotect(prot.ID(), "validator") {
		t.Fatal("Unprotect reports another protection")
	}
	if n, err := a.TrimOpenConns(ctxT(t)); n != 1 || err != nil {
		t.Fatalf("TrimOpenConns = %d, %v; want the unprotected peer closed", n, err)
	}
	if got := peersOf(trimmed(t, sub, 1)); got[0] != prot.ID() {
		t.Fatalf("trimmed %s, want the peer no longer protected", got[0].ShortString())
	}
}

// TestTrimWhenFullAtHardLimit: a node whose inbound links are all taken
// (MaxInboundConnections below the high water mark) refuses the next one
// with ErrInboundLimit and trims down to the low water mark, worst first,
// so that it does not refuse newcomers for ever.
func TestTrimWhenFullAtHardLimit(t *testing.T) {
	a, sub, peers := hubWithPeers(t, 4, func(c *peerlink.Config) {
		c.MaxConnections, c.MaxInboundConnections = 10, 4
		c.Trim = peerlink.TrimConfig{HighWater: 8, LowWater: 2, GracePeriod: -1}
	})
	for _, p := range peers[:2] {
		a.RecordError(p.ID(), errors.New("useless"))
	}
	err := newManager(t).Connect(ctxT(t), a.AddrInfo())
	var refused *transport.RemoteRefusedError
	if !errors.As(err, &refused) || refused.Reason != peerlink.ErrInboundLimit.Error() {
		t.Fatalf("fifth inbound link: %v, want refused at the inbound limit", err)
	}
	if got, want := sortedIDs(peersOf(trimmed(t, sub, 2))), idsOf(peers[:2]); !slices.Equal(got, want) {
		t.Fatalf("trimmed %v, want the two useless peers %v", got, want)
	}
	connect(t, newManager(t), a) // room again
}

// TestTrimSilencePeriod: after a trim, another waits for SilencePeriod,
// and meanwhile inbound links past the high water mark are refused with
// ErrHighWater, which their dialer is told.
func TestTrimSilencePeriod(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	t0 := fake.Now()
	a := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Idle.Timeout = -1
		c.Trim = peerlink.TrimConfig{HighWater: 3, LowWater: 2, GracePeriod: -1, SilencePeriod: 10 * time.Second, MinOutbound: -1}
	})
	sub := a.Subscribe(64)
	for range 4 {
		connect(t, newManager(t), a)
	}
	for _, ev := range trimmed(t, sub, 2) {
		if !ev.Time.Equal(t0) {
			t.Fatalf("first trim at %v, want at once (%v)", ev.Time, t0)
		}
	}
	waitUntil(t, sub, "the trim is over", func() bool { return a.ConnectionCount() == 2 })
	// Inside the silence period: the node's own dials pass the mark...
	timers := fake.Timers()
	for range 2 {
		connect(t, a, newManager(t))
	}
	// ...the trim they call for waits (its timer armed)...
	pollUntil(t, "the trim is deferred", func() bool { return fake.Timers() > timers })
	// ...and an inbound link past the mark is refused.
	err := newManager(t).Connect(ctxT(t), a.AddrInfo())
	var refused *transport.RemoteRefusedError
	if !errors.As(err, &refused) || refused.Code != transport.RefusalLimit || refused.Reason != peerlink.ErrHighWater.Error() {
		t.Fatalf("inbound link past the high water mark: %v, want a refusal naming ErrHighWater", err)
	}
	if !errors.Is(peerlink.ErrHighWater, peerlink.ErrConnectionLimit) {
		t.Error("ErrHighWater does not wrap ErrConnectionLimit")
	}
	// A protected peer is let in all the same.
	vip := newManager(t)
	if err := a.Protect(vip.ID(), "validator"); err != nil {
		t.Fatal(err)
	}
	connect(t, vip, a)
	connectedTo(t, a, sub, 5)
	fake.Advance(5 * time.Second)
	if n := a.ConnectionCount(); n != 5 {
		t.Fatalf("ConnectionCount = %d inside the silence period, want 5", n)
	}
	fake.Advance(5 * time.Second)
	for _, ev := range trimmed(t, sub, 3) {
		if ev.Time.Before(t0.Add(10 * time.Second)) {
			t.Fatalf("second trim at %v, inside the silence period (ends %v)", ev.Time, t0.Add(10*time.Second))
		}
		if ev.Peer == vip.ID() {
			t.Fatal("trimmed the protected peer")
		}
	}
	if n := a.ConnectionCount(); n != 2 {
		t.Fatalf("ConnectionCount = %d after the second trim, want 2 (the protected peer and one more)", n)
	}
	if st := a.Statistics().Trim; st.Trims != 2 || st.HighWaterRefusals != 1 {
		t.Fatalf("Statistics.Trim = %+v, want 2 trims and 1 refusal", st)
	}
}

// TestTrimHoldsUnderInboundFlood is the figure "link count while 500
// inbound dialers arrive at a node with high water 100": every dialer
// not connected dials again every 10 s of virtual time, for two and a
// half minutes, each wave all at once. The count never passes the high
// water mark by more than one link, stays above it at most GracePeriod +
// SilencePeriod, and ends under it. (In-memory transport: this is a test
// of scale.)
func TestTrimHoldsUnderInboundFlood(t *testing.T) {
	const (
		dialers = 500
		high    = 100
		low     = 80
		wave    = 10 * time.Second
	)
	network := transport.NewMemoryNetwork()
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	hub := newManager(t, func(c *peerlink.Config) {
		c.Transport = peerlink.MemoryTransport(network)
		c.ListenAddrs = []string{"hub"}
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Idle.Timeout = -1
		c.MaxPendingHandshakes = dialers
		c.Trim = peerlink.TrimConfig{HighWater: high, LowWater: low}
	})
	sub := hub.Subscribe(4 * dialers * 16)
	// The count right after each link registers, read as its event
	// arrives; and the count as the events tell it (which can only
	// overstate it: a close is published a moment after it stops counting).
	var maxSeen, maxEvents atomic.Int64
	var seenConnected atomic.Int64
	var mu sync.Mutex
	linked := make(map[peer.ID]bool) // the dialers the hub holds a link to
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		var running int64
		for ev := range sub.C {
			switch ev.Type {
			case peerlink.EventConnected:
				running++
				if n := int64(hub.ConnectionCount()); n > maxSeen.Load() {
					maxSeen.Store(n)
				}
				mu.Lock()
				linked[ev.Peer] = true
				mu.Unlock()
				seenConnected.Add(1)
			case peerlink.EventDisconnected:
				running--
				mu.Lock()
				delete(linked, ev.Peer)
				mu.Unlock()
			}
			if running > maxEvents.Load() {
				maxEvents.Store(running)
			}
		}
	}()
	trs := make([]*transport.Memory, dialers)
	for i := range trs {
		id, err := peer.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if trs[i], err = network.NewTransport(transport.Config{Identity: id, Network: "peerlink-test"}); err != nil {
			t.Fatal(err)
		}
	}
	conns := make([]transport.Conn, dialers)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var admitted int64
	var aboveFor, longestAbove time.Duration
	for w := range 15 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		var ok, refusedHigh, refusedOther atomic.Int64
		for i, tr := range trs {
			mu.Lock()
			in := linked[tr.LocalPeer()]
			mu.Unlock()
			if in {
				continue
			}
			if conns[i] != nil {
				conns[i].Close() // trimmed: the hub closed it
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := tr.Dial(ctxT(t), "hub", hub.ID())
				var refused *transport.RemoteRefusedError
				switch {
				case err == nil:
					ok.Add(1)
					conns[i] = c
				case errors.As(err, &refused) && refused.Reason == peerlink.ErrHighWater.Error():
					refusedHigh.Add(1)
				default:
					refusedOther.Add(1)
					t.Errorf("dial: %v", err)
				}
			}()
		}
		wg.Wait()
		admitted += ok.Load()
		pollUntil(t, "the admitted links are registered", func() bool { return seenConnected.Load() == admitted })
		n := hub.ConnectionCount()
		if n > high {
			aboveFor += wave
			longestAbove = max(longestAbove, aboveFor)
		} else {
			aboveFor = 0
		}
		t.Logf("t=%3ds links %3d (admitted %3d, refused at high water %3d)", w*int(wave/time.Second), n, ok.Load(), refusedHigh.Load())
		fake.Advance(wave)
	}
	// The flood stops; once the newest links are out of their grace
	// period, the count goes under the high water mark.
	fake.Advance(time.Minute)
	fake.Advance(wave)
	pollUntil(t, "the count is under the high water mark", func() bool { return hub.ConnectionCount() <= high })
	sub.Close()
	<-watch
	t.Logf("%d links admitted; max count %d (overshoot %d), %d as the events tell it; above high water for at most %v",
		admitted, maxSeen.Load(), maxSeen.Load()-high, maxEvents.Load(), longestAbove)
	if maxSeen.Load() > high+1 {
		t.Errorf("max count %d, want at most high+1 = %d", maxSeen.Load(), high+1)
	}
	if bound := peerlink.DefaultGracePeriod + peerlink.DefaultSilencePeriod; longestAbove > bound {
		t.Errorf("above high water for %v, want at most %v", longestAbove, bound)
	}
	// Each trim (one per grace period, once the newest links count)
	// makes room for high - low newcomers: the node keeps its best links
	// and still lets newcomers in.
	if admitted < high+2*(high-low) {
		t.Errorf("only %d links admitted in 150 s: trims do not make room", admitted)
	}
}

// TestSquattersDoNotDisplaceHonestPeers is go-libp2p-pubsub's connection
// manager test, larger: 20 honest peers that answer and 60 squatters that
// connect and never do useful work (half refuse the protocol, half never
// answer), arriving in random order and redialing when refused or
// trimmed, at a node with high/low water 40/30. The node's application
// asks every connected peer for an echo each round and records the
// outcome (RecordSuccess, RecordError); trims do the rest. Once every
// honest peer is in, none is trimmed again, however many squatters come.
func TestSquattersDoNotDisplaceHonestPeers(t *testing.T) {
	const (
		honestN   = 20
		squatterN = 60
		round     = 10 * time.Second
	)
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	node := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.DisableHealthMonitor = true
		c.Idle.Timeout = -1
		c.LimitExempt = loopbackExempt
		c.Trim = peerlink.TrimConfig{HighWater: 40, LowWater: 30, GracePeriod: round, SilencePeriod: round}
	})
	sub := node.Subscribe(4096)
	peerCfg := func(c *peerlink.Config) {
		c.ListenAddrs = nil
		c.Breaker.IsExcluded = func(error) bool { return true } // refusals must not open the circuit
	}
	var honest, all []*peerlink.ConnectionManager
	for i := range honestN + squatterN {
		p := newManager(t, peerCfg)
		switch {
		case i < honestN:
			withEcho(p, t)
			honest = append(honest, p)
		case i%2 == 0: // never answers
			if err := p.SetStreamHandler(echoProto, func(s *mux.Stream) { <-s.Context().Done() }); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, p)
	}
	rng := rand.New(rand.NewPCG(10, 20))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	ask := func(id peer.ID) {
		ctx, cancel := context.WithTimeout(peerlink.WithNoDial(ctxT(t)), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		s, err := node.OpenStream(ctx, id, echoProto, mux.PriorityNormal)
		if err == nil {
			defer s.Close()
			_ = s.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err = s.Write([]byte("ping")); err == nil {
				_, err = io.ReadFull(s, make([]byte, 4))
			}
		}
		if errors.Is(err, peerlink.ErrNotConnected) {
			return
		}
		if err != nil {
			node.RecordError(id, err)
		} else {
			node.RecordSuccess(id, time.Since(start))
		}
	}
	allIn, stableRounds, trimsSince := false, 0, 0
	var trimmedHonest []peer.ID
	isHonest := make(map[peer.ID]bool)
	for _, p := range honest {
		isHonest[p.ID()] = true
	}
	for r := 0; r < 40 && stableRounds < 5; r++ {
		var wg sync.WaitGroup
		for _, p := range all {
			if node.Status(p.ID()) == peer.StatusConnected {
				continue
			}
			wg.Go(func() { _ = p.Connect(ctxT(t), node.AddrInfo()) })
		}
		wg.Wait()
		pollUntil(t, "the admitted links are registered", func() bool {
			for _, p := range all {
				if len(p.Peers()) > 0 && node.Status(p.ID()) != peer.StatusConnected {
					return false
				}
			}
			return true
		})
		for _, id := range node.Peers() {
			wg.Go(func() { ask(id) })
		}
		wg.Wait()
		if n := node.ConnectionCount(); n > 41 {
			t.Fatalf("round %d: %d links, past high water + 1", r, n)
		}
		in := 0
		for _, p := range honest {
			if node.Status(p.ID()) == peer.StatusConnected {
				in++
			}
		}
		t.Logf("round %2d: %d links, %d of %d honest peers in", r, node.ConnectionCount(), in, honestN)
		if in == honestN {
			allIn = true
		}
		if allIn {
			stableRounds++
		}
		fake.Advance(round)
		// Drain the trims of this round.
	drain:
		for {
			select {
			case ev := <-sub.C:
				if ev.Type != peerlink.EventDisconnected || ev.Reason != peerlink.ReasonTrimmed || !allIn {
					continue
				}
				trimsSince++
				if isHonest[ev.Peer] {
					trimmedHonest = append(trimmedHonest, ev.Peer)
				}
			default:
				break drain
			}
		}
	}
	if !allIn {
		t.Fatal("the honest peers never all got in")
	}
	if len(trimmedHonest) > 0 {
		t.Fatalf("honest peers trimmed once all were in: %v", trimmedHonest)
	}
	for _, p := range honest {
		if st := node.Status(p.ID()); st != peer.StatusConnected {
			t.Errorf("honest peer %s: %v", p.ID().ShortString(), st)
		}
	}
	if trimsSince == 0 {
		t.Error("no squatter was trimmed once the honest peers were in: the test proves nothing")
	}
	t.Logf("%d squatters trimmed after the honest peers were all in", trimsSince)
}
