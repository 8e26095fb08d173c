package peerlink_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/balancer"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

func selectionNet(t *testing.T, names ...string) (*peerlink.ConnectionManager, []*peerlink.ConnectionManager) {
	newNode, _ := fakeNet(t)
	mk := func(name string) *peerlink.ConnectionManager {
		return newNode(name, func(c *peerlink.Config) {
			c.Rand = rand.NewPCG(1, 2) // the default balancer's seed: the picks repeat
		})
	}
	a := mk("a")
	var peers []*peerlink.ConnectionManager
	for _, n := range names {
		p := mk(n)
		connect(t, a, p)
		peers = append(peers, p)
	}
	return a, peers
}

// SelectBest with the default strategy (P2C peak EWMA) sends most
// requests to the fast peer, releases each pick at Done, and feeds the
// score.
func TestSelectBestPrefersTheFastPeer(t *testing.T) {
	a, peers := selectionNet(t, "fast", "slow", "slower")
	lat := map[peer.ID]time.Duration{peers[0].ID(): 5 * time.Millisecond, peers[1].ID(): 300 * time.Millisecond, peers[2].ID(): time.Second}
	for id, d := range lat {
		a.RecordSuccess(id, d)
	}
	picks := map[peer.ID]int{}
	for range 300 {
		s, err := a.SelectBest(ctxT(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		picks[s.Peer]++
		s.Done(nil, lat[s.Peer])
		s.Done(errors.New("ignored: a second Done"), 0)
	}
	t.Logf("picks: fast %d, slow %d, slower %d", picks[peers[0].ID()], picks[peers[1].ID()], picks[peers[2].ID()])
	// Two choices out of three: the fast peer wins whenever it is drawn
	// (2/3 of picks, 200 ± 8), the slowest never.
	if picks[peers[0].ID()] < 170 || picks[peers[2].ID()] != 0 {
		t.Errorf("picks %v: want the fast peer in about 2/3 of them and the slowest in none", picks)
	}
	// A pick not yet Done counts as load: least loaded spreads them.
	held := map[peer.ID]bool{}
	var sels []*peerlink.Selection
	for range 3 {
		s, err := a.SelectBest(ctxT(t), nil, peerlink.WithStrategy(balancer.NewLeastLoaded()))
		if err != nil {
			t.Fatal(err)
		}
		held[s.Peer] = true
		sels = append(sels, s)
	}
	if len(held) != 3 {
		t.Errorf("three picks in flight went to %d peers, want one each", len(held))
	}
	for _, s := range sels {
		s.Done(nil, 0)
	}
}

func TestSelectBestNoCandidate(t *testing.T) {
	a, peers := selectionNet(t, "p")
	unknown, _ := peer.GenerateIdentity()
	_, err := a.SelectBest(ctxT(t), []peer.ID{unknown.ID()})
	if !errors.Is(err, balancer.ErrNoCandidate) {
		t.Fatalf("only an unknown candidate: %v, want ErrNoCandidate", err)
	}
	s, err := a.SelectBest(ctxT(t), []peer.ID{unknown.ID(), peers[0].ID()})
	if err != nil || s.Peer != peers[0].ID() {
		t.Fatalf("SelectBest = %v, %v; want the connected peer", s, err)
	}
	s.Done(nil, 0)
	if err := a.Disconnect(peers[0].ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SelectBest(ctxT(t), []peer.ID{peers[0].ID()}); !errors.Is(err, balancer.ErrNoCandidate) {
		t.Fatalf("a disconnected candidate: %v, want ErrNoCandidate", err)
	}
}

// A key keeps its peer (rendezvous), and picks from many goroutines are
// safe.
func TestSelectBestAffinityAndConcurrency(t *testing.T) {
	a, _ := selectionNet(t, "p1", "p2", "p3", "p4")
	first, err := a.SelectBest(ctxT(t), nil, peerlink.WithStrategy(balancer.NewRendezvous()), peerlink.WithKey([]byte("block-42")))
	if err != nil {
		t.Fatal(err)
	}
	first.Done(nil, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s, err := a.SelectBest(ctxT(t), nil, peerlink.WithStrategy(balancer.NewRendezvous()), peerlink.WithKey([]byte("block-42")))
				if err != nil {
					t.Error(err)
					return
				}
				if s.Peer != first.Peer {
					t.Errorf("key moved from %s to %s", first.Peer.ShortString(), s.Peer.ShortString())
				}
				s.Done(nil, time.Millisecond)
				p, err := a.SelectBest(ctxT(t), nil)
				if err != nil {
					t.Error(err)
					return
				}
				p.Done(errors.New("boom"), 0)
			}
		})
	}
	wg.Wait()
}

// BenchmarkSelectBest: SelectBest and Done through the manager with
// 1,000 and 10,000 open links, among all of them (nil candidates) and
// among an explicit list of 8, for the default P2C and the strategies
// that scan. The balancer's own pick is benchmarked in balancer/; this
// adds what the manager does around it (the candidates' snapshots from
// the records' atomics, the in-flight count, Done feeding the score).
func BenchmarkSelectBest(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		hub, ids := manyLinks(b, n)
		for i, id := range ids {
			hub.RecordSuccess(id, time.Duration(1+i%50)*time.Millisecond)
		}
		for _, st := range []balancer.Strategy{nil, balancer.NewRoundRobin(), balancer.NewLeastLoadedOfTwo(1), balancer.NewHighestScore()} {
			name := "p2c"
			var opts []peerlink.SelectOption
			if st != nil {
				name = st.Name()
				opts = append(opts, peerlink.WithStrategy(st))
			}
			for _, among := range []struct {
				name string
				ids  []peer.ID
			}{{"all", nil}, {"8", ids[n/2 : n/2+8]}} {
				b.Run(fmt.Sprintf("links=%d/%s/among=%s", n, name, among.name), func(b *testing.B) {
					ctx := ctxT(b)
					b.ReportAllocs()
					for b.Loop() {
						sel, err := hub.SelectBest(ctx, among.ids, opts...)
						if err != nil {
							b.Fatal(err)
						}
						sel.Done(nil, time.Millisecond)
					}
				})
			}
		}
	}
}

// A peer whose circuit is open is never selected, though it has a link
// (it dialed us after our dials to it failed), and is again once the
// circuit's open time has passed.
func TestSelectBestSkipsOpenCircuit(t *testing.T) {
	mk, fake := fakeNet(t)
	a, b := mk("a"), mk("b")
	wrong := peer.AddrInfo{ID: b.ID(), Addrs: []string{"nowhere"}}
	for a.BreakerState(b.ID()) != breaker.StateOpen {
		if err := a.Connect(ctxT(t), wrong); err == nil {
			t.Fatal("dial to nowhere succeeded")
		}
	}
	sub := a.Subscribe(8)
	defer sub.Close()
	connect(t, b, a)
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected }) // a registers b's link on its own time
	if _, err := a.SelectBest(ctxT(t), nil); !errors.Is(err, balancer.ErrNoCandidate) || !strings.Contains(err.Error(), "among 1 peers") {
		t.Fatalf("SelectBest with the only peer's circuit open: %v, want ErrNoCandidate", err)
	}
	if _, err := a.SelectBest(ctxT(t), []peer.ID{b.ID()}); !errors.Is(err, balancer.ErrNoCandidate) {
		t.Fatalf("SelectBest(b) with b's circuit open: %v, want ErrNoCandidate", err)
	}
	fake.Advance(breaker.DefaultOpenTimeout)
	sel, err := a.SelectBest(ctxT(t), nil)
	if err != nil || sel.Peer != b.ID() {
		t.Fatalf("SelectBest once the circuit may let a trial through: %v, %v", sel, err)
	}
	sel.Done(nil, time.Millisecond)
}
