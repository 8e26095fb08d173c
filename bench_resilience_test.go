package peerlink_test

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// BenchmarkPersistentPeerRestart: a persistent peer's process restarts
// (same identity, same address); each op is one restart, timed from the
// new process listening to the first stream echoed over the new link.
// The median goes in ms-median; the backoff settings are in the name.
func BenchmarkPersistentPeerRestart(b *testing.B) {
	for _, bo := range []peerlink.Backoff{
		{InitialInterval: peerlink.DefaultBackoffInitialInterval, RandomizationFactor: 0.5},
		{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, MaxInterval: time.Second},
	} {
		b.Run(fmt.Sprintf("initial=%v", bo.InitialInterval), func(b *testing.B) {
			idB, addr := newIdentity(b), reservedAddr(b)
			remote := startAt(b, idB, addr)
			withEcho(remote, b)
			a := newManager(b, func(c *peerlink.Config) { c.Backoff = bo })
			sub := a.Subscribe(0)
			if err := a.AddPersistentPeer(peer.AddrInfo{ID: idB.ID(), Addrs: []string{addr}}); err != nil {
				b.Fatal(err)
			}
			waitEvent(b, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				if err := remote.Close(); err != nil {
					b.Fatal(err)
				}
				waitEvent(b, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
				start := time.Now()
				remote = startAt(b, idB, addr)
				withEcho(remote, b)
				waitEvent(b, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
				roundTrip(b, a, idB.ID(), []byte("back"))
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
			b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms-max")
		})
	}
}

// BenchmarkHealthMonitorIdleLinks: one node with 1,000 idle links (the
// in-memory transport) and its health monitor sweeping every second. A
// link is pinged when nothing has arrived on it for an Interval, and a
// ping's answer is arrival, so an idle link is pinged every other sweep.
// Each op is one second; cpu-ms/s is the whole process's CPU time per
// second, the answers included (the other nodes run no monitor and no
// keepalive).
func BenchmarkHealthMonitorIdleLinks(b *testing.B) {
	const links = 1000
	network := transport.NewMemoryNetwork()
	hubCfg := peerlink.DefaultConfig()
	hubCfg.Transport = peerlink.MemoryTransport(network)
	hubCfg.ListenAddrs = []string{"hub"}
	hubCfg.MaxConnections, hubCfg.MaxInboundConnections = 0, 0
	hubCfg.MaxPendingHandshakes = links
	hubCfg.Health = health.Config{Interval: time.Second}
	hub, err := peerlink.New(hubCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	for range links {
		cfg := peerlink.DefaultConfig()
		cfg.Transport = peerlink.MemoryTransport(network)
		cfg.DisableHealthMonitor = true
		cfg.Health.Interval = time.Hour // and so no yamux keepalive to speak of
		m, err := peerlink.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		if err := m.Connect(ctxT(b), hub.AddrInfo()); err != nil {
			b.Fatal(err)
		}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	pings := func() (n uint64) {
		for _, id := range hub.Peers() {
			if info, err := hub.ConnectionInfo(id); err == nil {
				n += info.Health.Samples
			}
		}
		return n
	}
	time.Sleep(time.Second) // let a first full sweep settle
	b.ResetTimer()
	c0, t0, p0 := cpu(), time.Now(), pings()
	for range b.N {
		time.Sleep(time.Second) // the workload is time passing: one sweep
	}
	used, wall, sent := cpu()-c0, time.Since(t0), pings()-p0
	b.ReportMetric(float64(used.Microseconds())/1000/wall.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(sent)/wall.Seconds(), "pings/s")
	if sent > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(sent), "cpu-µs/ping")
	}
}
