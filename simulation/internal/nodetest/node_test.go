package nodetest_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/simulation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// nodeWorkload is a light workload for real-time tests: a few messages
// and requests a second from 1.5 s, once the links are up (a persistent
// peer's first dial waits up to Backoff.InitialInterval, 1 s).
func nodeWorkload() *simulation.WorkloadSpec {
	return &simulation.WorkloadSpec{
		Gossip:   &simulation.GossipSpec{Rate: 2, Fanout: 2, Start: simulation.Duration(1500 * time.Millisecond), Settle: simulation.Duration(time.Second)},
		Requests: &simulation.RequestSpec{Rate: 5, Start: simulation.Duration(1500 * time.Millisecond)},
	}
}

// nodeRunTime is how long the test nodes run.
const nodeRunTime = 4 * time.Second

// runNodes runs n fully meshed nodes as goroutines over TCP on
// 127.0.0.1, each dialing the nodes before it, which listen already:
// their addresses are known when its config is made (port 0, no race).
// during runs while they do, with node 0's metrics address.
func runNodes(t *testing.T, n int, seed uint64, d time.Duration, during func(metrics string)) []*simulation.NodeResult {
	t.Helper()
	// yamux's timer pool may hold timers of an earlier test's bubble.
	runtime.GC()
	runtime.GC()
	start := time.Now().Add(500 * time.Millisecond)
	addrs := make([]string, n)
	type out struct {
		i   int
		res *simulation.NodeResult
		err error
	}
	outs := make(chan out, n)
	metrics := make(chan string, 1)
	for i := range n {
		cfg := simulation.NodeConfig{
			Node: i, Nodes: n, Seed: seed, Listen: "127.0.0.1:0", Start: start, Duration: simulation.Duration(d),
			Workload: nodeWorkload(), LimitExempt: []string{"127.0.0.0/8"},
		}
		if i == 0 {
			cfg.Metrics = "127.0.0.1:0"
		}
		for j := range n {
			if j == i {
				continue
			}
			id, err := simulation.NodeIdentity(seed, j)
			if err != nil {
				t.Fatal(err)
			}
			p := simulation.NodePeer{Node: j, ID: id.ID()}
			if j < i {
				p.Dial, p.Addrs = true, []string{addrs[j]}
			}
			cfg.Peers = append(cfg.Peers, p)
		}
		ready := make(chan string, 1)
		go func() {
			res, err := simulation.RunNode(context.Background(), cfg, simulation.NodeOptions{Ready: func(listen, m string) {
				if m != "" {
					metrics <- m
				}
				ready <- listen
			}})
			if err != nil {
				close(ready)
			}
			outs <- out{i, res, err}
		}()
		addr, ok := <-ready
		if !ok {
			o := <-outs
			t.Fatalf("node %d: %v", o.i, o.err)
		}
		addrs[i] = addr
	}
	during(<-metrics)
	results := make([]*simulation.NodeResult, n)
	for range n {
		o := <-outs
		if o.err != nil {
			t.Fatalf("node %d: %v", o.i, o.err)
		}
		results[o.i] = o.res
	}
	runtime.GC()
	runtime.GC()
	return results
}

// scrapeClient keeps no connection idle: one would outlive its test
// (goleak).
var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// scrape returns the metric families served at url.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(resp.Body)
}

// value returns the value of the first series of family name, -1 if
// there is none.
func value(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return -1
	}
	m := f.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return -1
}

func TestRunNodeOverTCP(t *testing.T) {
	const n, seed = 3, 7
	results := runNodes(t, n, seed, nodeRunTime, func(metrics string) {
		// Node 0 links to both others once they dial it at the start.
		url := "http://" + metrics + "/metrics"
		deadline := time.Now().Add(5 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			fams, err := scrape(url)
			if err != nil {
				t.Fatal(err)
			}
			peers := value(fams, "peerlink_peers")
			if peers == n-1 {
				peerlink := 0
				for name := range fams {
					if strings.HasPrefix(name, "peerlink_") {
						peerlink++
					}
				}
				if dials := value(fams, "peerlink_dials_total"); dials != 0 || peerlink < 10 {
					t.Errorf("node 0's metrics: peerlink_dials_total %v, want 0 (the others dial it); %d peerlink_ families", dials, peerlink)
				}
				break
			}
			if peers < 0 || peers > n-1 || time.Now().After(deadline) {
				t.Fatalf("peerlink_peers is %v, want %d", peers, n-1)
			}
			<-tick.C
		}
	})

	published := map[uint64]int{}
	received := make([]map[uint64]bool, n)
	for i, r := range results {
		if r.Node != i || r.DroppedEvents != 0 || r.LostEvents != 0 {
			t.Fatalf("node %d's results: node %d, %d dropped, %d lost", i, r.Node, r.DroppedEvents, r.LostEvents)
		}
		received[i] = map[uint64]bool{}
		ok, linked := 0, 0
		for _, e := range r.Events {
			switch e.Kind {
			case simulation.NodeEventConnected:
				linked++
			case simulation.NodeEventDisconnected:
				linked--
			case simulation.NodeEventPublished:
				// Published with every link up: it must reach every
				// node.
				if linked == n-1 {
					published[e.Msg] = i
				}
			case simulation.NodeEventReceived:
				if !e.Dup {
					received[i][e.Msg] = true
				}
			case simulation.NodeEventRequest:
				if e.Cause == "" {
					ok++
					if e.Peer < 0 || e.Peer == i || e.Latency <= 0 {
						t.Errorf("node %d: request answered by %d in %v", i, e.Peer, e.Latency)
					}
				}
			}
		}
		if ok == 0 {
			t.Errorf("node %d: no request answered", i)
		}
		if r.Process.Heap <= 0 || r.Process.Goroutines <= 0 || r.Stats.LinksOpened[0]+r.Stats.LinksOpened[1] < n-1 {
			t.Errorf("node %d: process %+v, stats %+v", i, r.Process, r.Stats)
		}
	}
	if len(published) == 0 {
		t.Fatal("no message published with every link up")
	}
	for id, origin := range published {
		for j := range n {
			if j != origin && !received[j][id] {
				t.Errorf("message %x of node %d never reached node %d", id, origin, j)
			}
		}
	}

	g, err := simulation.FullMesh(n)
	if err != nil {
		t.Fatal(err)
	}
	res, err := simulation.Gather(simulation.Scenario{Nodes: n, Seed: seed, Duration: simulation.Duration(nodeRunTime), Workload: nodeWorkload()}, g, results)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != simulation.ModeLocal || !res.FullyConnected || res.Gossip == nil || res.Gossip.Counted == 0 {
		t.Fatalf("gathered: mode %q, fully connected %v, gossip %+v", res.Mode, res.FullyConnected, res.Gossip)
	}
	for _, m := range res.Gossip.Messages {
		if _, ok := published[m.ID]; ok && (!m.Complete || m.Target != n) {
			t.Errorf("gathered message %x, published with every link up: %+v", m.ID, m)
		}
	}
	if res.Requests == nil || res.Requests.OK == 0 || len(res.Selection) != 3 {
		t.Fatalf("gathered requests %+v, selection %+v", res.Requests, res.Selection)
	}
	for _, q := range res.Selection {
		if q.Picks != 0 {
			t.Errorf("strategy %s: %d picks judged without a true latency", q.Strategy, q.Picks)
		}
	}
}

func TestRunNodeAddressInUse(t *testing.T) {
	runtime.GC()
	runtime.GC()
	defer func() {
		runtime.GC()
		runtime.GC()
	}()
	// One node takes a port; a second asks for the same.
	first := simulation.NodeConfig{Node: 0, Nodes: 2, Listen: "127.0.0.1:0", Start: time.Now(), Duration: simulation.Duration(time.Minute)}
	taken := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := simulation.RunNode(ctx, first, simulation.NodeOptions{Ready: func(l, _ string) { taken <- l }})
		done <- err
	}()
	cfg := first
	cfg.Node, cfg.Listen = 1, <-taken
	_, err := simulation.RunNode(context.Background(), cfg, simulation.NodeOptions{})
	cancel()
	if err2 := <-done; err2 != nil {
		t.Fatal(err2)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("simulation.RunNode on a port in use: %v, want EADDRINUSE", err)
	}
}
