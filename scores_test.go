package peerlink_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// fakeNet returns a maker of managers on one in-memory network and one
// fake clock, health monitor and idle expiry off: their figures and links
// move only when the test moves them.
func fakeNet(t testing.TB) (mk func(name string, mods ...func(*peerlink.Config)) *peerlink.ConnectionManager, fake *clock.Fake) {
	net := transport.NewMemoryNetwork()
	fake = clock.NewFake(time.Unix(1_000_000, 0))
	return func(name string, mods ...func(*peerlink.Config)) *peerlink.ConnectionManager {
		return newManager(t, append([]func(*peerlink.Config){func(c *peerlink.Config) {
			c.Transport = peerlink.MemoryTransport(net)
			c.ListenAddrs = []string{name}
			c.Clock = fake
			c.DisableHealthMonitor = true
			c.Idle.Timeout = -1
		}}, mods...)...)
	}, fake
}

func TestQualityScore(t *testing.T) {
	mk, fake := fakeNet(t)
	a, good, bad := mk("a"), mk("good"), mk("bad")
	connect(t, a, good)
	connect(t, a, bad)
	if s := a.QualityScore(peer.ID{}); s != 0 {
		t.Errorf("unknown peer scores %v", s)
	}
	for range 5 {
		a.RecordSuccess(good.ID(), 20*time.Millisecond)
		a.RecordSuccess(bad.ID(), 20*time.Millisecond)
	}
	base := a.QualityScore(bad.ID())
	for range 5 {
		a.RecordError(bad.ID(), errors.New("timeout"))
	}
	hurt := a.QualityScore(bad.ID())
	if hurt >= base || hurt >= a.QualityScore(good.ID()) {
		t.Fatalf("errors do not lower the score: before %v, after %v, good peer %v", base, hurt, a.QualityScore(good.ID()))
	}
	// Errors decay: an hour later (six half-lives) the peer has recovered.
	fake.Advance(time.Hour)
	if healed := a.QualityScore(bad.ID()); healed <= hurt+0.1 {
		t.Errorf("score %v an hour after the errors, %v right after: errors do not decay", healed, hurt)
	}
	// Slow answers score lower.
	slow := mk("slow")
	connect(t, a, slow)
	for range 5 {
		a.RecordSuccess(slow.ID(), 800*time.Millisecond)
	}
	if a.QualityScore(slow.ID()) >= a.QualityScore(good.ID()) {
		t.Errorf("a slow peer (%v) scores no lower than a fast one (%v)", a.QualityScore(slow.ID()), a.QualityScore(good.ID()))
	}

	// The breakdown adds up to the score.
	b, ok := a.ScoreBreakdown(slow.ID())
	if !ok {
		t.Fatal("no breakdown for a connected peer")
	}
	var sum float64
	for _, p := range b.Parts {
		sum += p.Contribution()
	}
	if math.Abs(sum-b.Score) > 1e-9 || b.Score != a.QualityScore(slow.ID()) {
		t.Errorf("breakdown %+v adds up to %v, score %v", b, sum, a.QualityScore(slow.ID()))
	}

	// The application's value moves it, within [−1, 1].
	before := a.QualityScore(good.ID())
	if err := a.SetApplicationScore(good.ID(), -1); err != nil {
		t.Fatal(err)
	}
	if after := a.QualityScore(good.ID()); after >= before {
		t.Errorf("application value −1: score %v, was %v", after, before)
	}
	if err := a.SetApplicationScore(good.ID(), 2); !errors.Is(err, peerlink.ErrInvalidConfig) {
		t.Errorf("application value 2: %v, want ErrInvalidConfig", err)
	}

	// HealthyPeers: best first.
	hp := a.HealthyPeers()
	if len(hp) != 3 {
		t.Fatalf("HealthyPeers = %v, want 3", hp)
	}
	for i := 1; i < len(hp); i++ {
		if hp[i].Score > hp[i-1].Score {
			t.Errorf("HealthyPeers not sorted: %v", hp)
		}
	}
}

// A peer whose circuit is open scores 0.
func TestOpenCircuitScoresZero(t *testing.T) {
	net := transport.NewMemoryNetwork()
	a := newManager(t, func(c *peerlink.Config) {
		c.Transport = peerlink.MemoryTransport(net)
		c.ListenAddrs = []string{"a"}
	})
	gone, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	info := peer.AddrInfo{ID: gone.ID(), Addrs: []string{"nobody"}}
	for a.BreakerState(gone.ID()) != breaker.StateOpen {
		if err := a.Connect(ctxT(t), info); err == nil {
			t.Fatal("dial to nobody succeeded")
		}
	}
	if s := a.QualityScore(gone.ID()); s != 0 {
		t.Errorf("open circuit: score %v, want 0", s)
	}
	b, _ := a.ScoreBreakdown(gone.ID())
	if b.Score != 0 || b.Parts[len(b.Parts)-1].Name != "circuit" {
		t.Errorf("breakdown %+v: want the circuit to take the score to 0", b)
	}
}

// Reading a score is a couple of atomic loads (while the cache is fresh);
// a sample updates it in O(1).
func BenchmarkQualityScore(b *testing.B) {
	mk, _ := fakeNet(b)
	a, p := mk("a"), mk("p")
	connect(b, a, p)
	a.RecordSuccess(p.ID(), 10*time.Millisecond)
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		var s float64
		for b.Loop() {
			s += a.QualityScore(p.ID())
		}
		_ = s
	})
	b.Run("RecordSuccess", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a.RecordSuccess(p.ID(), 10*time.Millisecond)
		}
	})
}
