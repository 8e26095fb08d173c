package bubbletest_test

import (
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/internal/raceflag"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// inBubble runs f in a synctest bubble (virtual time). yamux keeps a
// process-wide pool of timers, and a timer made outside a bubble must not
// be used inside one (or the other way round): two GCs empty the pool on
// both sides of the bubble.
func inBubble(t *testing.T, f func(t *testing.T)) {
	runtime.GC()
	runtime.GC()
	defer raceflag.Bubble()() // the race runtime's limit in bubbles: see raceflag
	synctest.Test(t, f)
	runtime.GC()
	runtime.GC()
}

// TestDeadLinkDetectionTime measures, in virtual time over the in-memory
// transport, how long a black-holed link takes to be declared dead with
// the default health config and with a tight one, and checks each against
// its DetectionBound.
func TestDeadLinkDetectionTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  health.Config
	}{
		{"default", health.DefaultConfig()},
		{"tight", health.Config{Interval: time.Second, Timeout: 500 * time.Millisecond, FailureThreshold: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				network := transport.NewMemoryNetwork()
				var ft *faultnet.Transport
				newNode := func(wrap bool) *peerlink.ConnectionManager {
					cfg := peerlink.DefaultConfig()
					cfg.Health = tc.cfg
					cfg.ListenAddrs = []string{map[bool]string{true: "a", false: "b"}[wrap]}
					mem := peerlink.MemoryTransport(network)
					cfg.Transport = mem
					if wrap {
						cfg.Transport = func(c transport.Config) (transport.Transport, error) {
							inner, err := mem(c)
							ft = faultnet.Wrap(inner)
							return ft, err
						}
					}
					m, err := peerlink.New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					return m
				}
				a, b := newNode(true), newNode(false)
				defer b.Close()
				defer a.Close()
				sub := a.Subscribe(0)
				if err := a.Connect(t.Context(), b.AddrInfo()); err != nil {
					t.Fatal(err)
				}
				// Go silent at an arbitrary moment between two sweeps.
				time.Sleep(tc.cfg.Interval*3 + tc.cfg.Interval/3)
				silenced := time.Now()
				ft.BlackHole()
				for ev := range sub.C {
					if ev.Type == peerlink.EventDisconnected {
						took := time.Since(silenced)
						if bound := tc.cfg.DetectionBound(); took > bound || ev.Reason != peerlink.ReasonUnhealthy {
							t.Errorf("%v after %v, want unhealthy within %v", ev.Reason, took, bound)
						}
						t.Logf("%s config: dead link declared after %v of virtual time (bound %v)", tc.name, took, tc.cfg.DetectionBound())
						return
					}
				}
			})
		})
	}
}
