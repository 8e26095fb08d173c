package health_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/peer"
)

// Run and CheckAll start goroutines; none may outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testID(i int) peer.ID {
	var id peer.ID
	binary.LittleEndian.PutUint64(id[:8], uint64(i)+1)
	id[31] = 0xcd
	return id
}

var errRefused = errors.New("ping: stream refused")

// fake is a Target whose Ping does what ping says, counting calls and
// the pings in flight at once.
type fake struct {
	id   peer.ID
	ping func(ctx context.Context) (time.Duration, error)

	mu   sync.Mutex
	last time.Time

	calls    atomic.Int64
	inFlight *gauge // optional, shared between fakes
}

func newFake(i int, ping func(context.Context) (time.Duration, error)) *fake {
	return &fake{id: testID(i), ping: ping}
}

func (f *fake) Peer() peer.ID { return f.id }

func (f *fake) Ping(ctx context.Context) (time.Duration, error) {
	f.calls.Add(1)
	if f.inFlight != nil {
		f.inFlight.inc()
		defer f.inFlight.dec()
	}
	return f.ping(ctx)
}

func (f *fake) LastActivity() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fake) setActivity(t time.Time) {
	f.mu.Lock()
	f.last = t
	f.mu.Unlock()
}

// answers is a peer that answers after rtt.
func answers(rtt time.Duration) func(context.Context) (time.Duration, error) {
	return func(ctx context.Context) (time.Duration, error) {
		t := time.NewTimer(rtt)
		defer t.Stop()
		select {
		case <-t.C:
			return rtt, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// silent is a peer that never answers: Ping returns when ctx ends.
func silent(ctx context.Context) (time.Duration, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// refuses is a peer whose link fails at once.
func refuses(context.Context) (time.Duration, error) { return 0, errRefused }

// gauge counts things in progress and remembers the peak.
type gauge struct {
	cur, peak atomic.Int64
}

func (g *gauge) inc() {
	n := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) dec() { g.cur.Add(-1) }

// link is a Target with its State, as the manager keeps them.
type link struct {
	t  *fake
	st *health.State
}

// seq iterates over links in the shape MonitorConfig.Targets wants.
func seq(links []link) func(yield func(health.Target, *health.State) bool) {
	return func(yield func(health.Target, *health.State) bool) {
		for _, l := range links {
			if !yield(l.t, l.st) {
				return
			}
		}
	}
}

// events records the hooks' calls with the (virtual) time of each.
type events struct {
	mu      sync.Mutex
	results []event
	dead    []event
}

type event struct {
	peer peer.ID
	r    health.Result
	at   time.Time
}

func (e *events) onResult(t health.Target, r health.Result) {
	e.mu.Lock()
	e.results = append(e.results, event{t.Peer(), r, time.Now()})
	e.mu.Unlock()
}

func (e *events) onDead(t health.Target, r health.Result) {
	e.mu.Lock()
	e.dead = append(e.dead, event{t.Peer(), r, time.Now()})
	e.mu.Unlock()
}

func (e *events) deaths() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event(nil), e.dead...)
}

func (e *events) numResults() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.results)
}

// run starts m.Run in a goroutine; stop cancels it and returns once Run
// has returned.
func run(m *health.Monitor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
