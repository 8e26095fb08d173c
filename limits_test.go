package peerlink_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/transport"
)

func TestConnectionLimitsDefaults(t *testing.T) {
	m := newManager(t, func(c *peerlink.Config) { c.ListenAddrs = nil })
	want := peerlink.ConnectionLimits{
		MaxConnections: 400, MaxInboundConnections: 300,
		Trim: peerlink.TrimConfig{
			HighWater: 200, LowWater: 160, GracePeriod: time.Minute, SilencePeriod: 10 * time.Second,
			MinOutbound: 8, MaxPerSubnet: 16,
		},
	}
	if got := m.ConnectionLimits(); got != want {
		t.Fatalf("ConnectionLimits = %+v\nwant %+v", got, want)
	}
	// Zero limits mean no limit and no trimming; negative fields, off.
	m = newManager(t, func(c *peerlink.Config) {
		c.ListenAddrs = nil
		c.Transport = peerlink.MemoryTransport(transport.NewMemoryNetwork())
		c.NodeMemoryBudget = -1 // no memory cap either
		c.MaxConnections, c.MaxInboundConnections = 0, 0
		c.Trim.GracePeriod, c.Trim.MinOutbound = -time.Second, -3
	})
	got := m.ConnectionLimits()
	if got.MaxConnections != 0 || got.Trim.HighWater != -1 || got.Trim.GracePeriod != -1 || got.Trim.MinOutbound != -1 {
		t.Fatalf("unlimited: %+v", got)
	}
	// What ConnectionLimits returns, SetConnectionLimits takes back unchanged.
	if err := m.SetConnectionLimits(got); err != nil || m.ConnectionLimits() != got {
		t.Fatalf("round trip: %v, %+v", err, m.ConnectionLimits())
	}
}

func TestConnectionLimitsValidationNamesField(t *testing.T) {
	for _, tc := range []struct {
		field string
		l     peerlink.ConnectionLimits
	}{
		{"MaxConnections", peerlink.ConnectionLimits{MaxConnections: -1}},
		{"MaxInboundConnections", peerlink.ConnectionLimits{MaxConnections: 5, MaxInboundConnections: 10}},
		{"Trim.HighWater", peerlink.ConnectionLimits{MaxConnections: 100, Trim: peerlink.TrimConfig{HighWater: 101}}},
		{"Trim.HighWater", peerlink.ConnectionLimits{Trim: peerlink.TrimConfig{HighWater: 1}}},
		{"Trim.LowWater", peerlink.ConnectionLimits{MaxConnections: 100, Trim: peerlink.TrimConfig{HighWater: 50, LowWater: 50}}},
		{"Trim.LowWater", peerlink.ConnectionLimits{MaxConnections: 100, Trim: peerlink.TrimConfig{LowWater: 60}}}, // derived high 50
		{"Trim.LowWater", peerlink.ConnectionLimits{Trim: peerlink.TrimConfig{LowWater: -1}}},
	} {
		// In New...
		cfg := peerlink.DefaultConfig()
		cfg.MaxConnections, cfg.MaxInboundConnections, cfg.Trim = tc.l.MaxConnections, tc.l.MaxInboundConnections, tc.l.Trim
		_, err := peerlink.New(cfg)
		if !errors.Is(err, peerlink.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New with %+v: %v, want ErrInvalidConfig naming %s", tc.l, err, tc.field)
		}
		// ...and at run time, where the limits in force stay.
		m := newManager(t, func(c *peerlink.Config) { c.ListenAddrs = nil })
		before := m.ConnectionLimits()
		err = m.SetConnectionLimits(tc.l)
		if !errors.Is(err, peerlink.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("SetConnectionLimits(%+v): %v, want ErrInvalidConfig naming %s", tc.l, err, tc.field)
		}
		if m.ConnectionLimits() != before {
			t.Errorf("a refused SetConnectionLimits changed the limits")
		}
	}
}

// TestSetConnectionLimitsShrinksByScoreAndGrows: shrinking the limits
// below the open links trims down to them at once, lowest score first;
// growing them lets more links in; links that fit stay.
func TestSetConnectionLimitsShrinksByScoreAndGrows(t *testing.T) {
	a, sub, peers := hubWithPeers(t, 6, func(c *peerlink.Config) {
		c.MaxConnections, c.MaxInboundConnections = 20, 20
		c.Trim = peerlink.TrimConfig{HighWater: 10, LowWater: 8, GracePeriod: -1}
	})
	for _, p := range peers[:3] {
		a.RecordSuccess(p.ID(), time.Millisecond)
	}
	for _, p := range peers[3:] {
		a.RecordError(p.ID(), errors.New("useless"))
	}
	// Limits that still fit the six links close none of them.
	fits := peerlink.ConnectionLimits{MaxConnections: 8, MaxInboundConnections: 8, Trim: peerlink.TrimConfig{HighWater: 7, LowWater: 6, GracePeriod: -1}}
	if err := a.SetConnectionLimits(fits); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.TrimOpenConns(ctxT(t)); n != 0 || a.ConnectionCount() != 6 {
		t.Fatalf("limits that fit: %d closed, %d links left", n, a.ConnectionCount())
	}
	// Shrink: four links at most, three after the trim.
	shrunk := peerlink.ConnectionLimits{MaxConnections: 4, MaxInboundConnections: 4, Trim: peerlink.TrimConfig{HighWater: 4, LowWater: 3, GracePeriod: -1}}
	if err := a.SetConnectionLimits(shrunk); err != nil {
		t.Fatal(err)
	}
	if got, want := sortedIDs(peersOf(trimmed(t, sub, 3))), idsOf(peers[3:]); !fmtEq(got, want) {
		t.Fatalf("trimmed %v, want the three with errors %v", got, want)
	}
	if got, want := a.Peers(), idsOf(peers[:3]); !fmtEq(got, want) {
		t.Fatalf("peers left %v, want %v", got, want)
	}
	if got := a.ConnectionLimits(); got.MaxConnections != 4 || got.Trim.HighWater != 4 || got.Trim.LowWater != 3 {
		t.Fatalf("ConnectionLimits = %+v", got)
	}
	// Grow: more links get in.
	if err := a.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 50, MaxInboundConnections: 50}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		connect(t, newManager(t), a)
	}
	connectedTo(t, a, sub, 13)
	if got := a.ConnectionLimits().Trim; got.HighWater != 25 || got.LowWater != 20 {
		t.Fatalf("watermarks derived from MaxConnections 50: %+v, want 25/20", got)
	}
}

func fmtEq[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestConnectionLimitCappedByMemoryBudget: with no limit set, the
// connection limit is what the memory budget holds at LinkMemory a link
// (and no watermarks are derived from it), and New says why in its log,
// once.
func TestConnectionLimitCappedByMemoryBudget(t *testing.T) {
	log := make(lineLog, 64)
	m := newManager(t, func(c *peerlink.Config) {
		c.ListenAddrs = nil
		c.Transport = peerlink.MemoryTransport(transport.NewMemoryNetwork()) // no file descriptors to count
		c.MaxConnections, c.MaxInboundConnections = 0, 0
		c.NodeMemoryBudget = 100 * peerlink.LinkMemory
		c.Logger = zerolog.New(log).Level(zerolog.InfoLevel)
	})
	got := m.ConnectionLimits()
	if got.MaxConnections != 100 || got.Trim.HighWater != -1 {
		t.Fatalf("limits %+v, want 100 links (and, as no limit was asked for, no watermarks)", got)
	}
	if capped := log.capped(); len(capped) != 1 || !strings.Contains(capped[0], "NodeMemoryBudget") {
		t.Fatalf("log lines %q do not say once why the limit was capped", capped)
	}
	// A limit under the cap stands.
	if err := m.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 60}); err != nil || m.ConnectionLimits().MaxConnections != 60 {
		t.Fatalf("limit under the cap: %v, %+v", err, m.ConnectionLimits())
	}
	// One over it is capped again.
	if err := m.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 1000, Trim: peerlink.TrimConfig{HighWater: 900}}); err != nil {
		t.Fatal(err)
	}
	if got := m.ConnectionLimits(); got.MaxConnections != 100 || got.Trim.HighWater != 100 || got.Trim.LowWater != 80 {
		t.Fatalf("capped at run time: %+v", got)
	}
}

// lineLog hands each log line to a channel (zerolog writes a line per
// call), dropping lines once it is full.
type lineLog chan string

func (l lineLog) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default:
	}
	return len(p), nil
}

// capped returns the lines logged so far that say the connection limit
// was capped.
func (l lineLog) capped() []string {
	var lines []string
	for len(l) > 0 {
		if line := <-l; strings.Contains(line, "connection limit capped") {
			lines = append(lines, line)
		}
	}
	return lines
}

// BenchmarkLinkMemory measures what an idle link costs besides its
// streams' buffers (LinkMemory): heap and stacks of both ends of 200
// links over TCP and TLS between managers, per end.
func BenchmarkLinkMemory(b *testing.B) {
	const links = 200
	hub := newManager(b, func(c *peerlink.Config) {
		c.LimitExempt = loopbackExempt
		c.MaxPendingHandshakes = links
	})
	clients := make([]*peerlink.ConnectionManager, links)
	for i := range clients {
		clients[i] = newManager(b, func(c *peerlink.Config) { c.ListenAddrs = nil })
	}
	inUse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	sub := hub.Subscribe(links + 16)
	b.ResetTimer()
	var perEnd float64
	for b.Loop() {
		before := inUse()
		for _, c := range clients {
			connect(b, c, hub)
		}
		connectedTo(b, hub, sub, links)
		after := inUse()
		perEnd = float64(after-before) / (2 * links)
		b.StopTimer()
		for _, c := range clients {
			if err := c.Disconnect(hub.ID()); err != nil {
				b.Fatal(err)
			}
		}
		waitUntil(b, sub, "the links are gone", func() bool { return hub.ConnectionCount() == 0 })
		b.StartTimer()
	}
	b.ReportMetric(perEnd, "B/link-end")
}
