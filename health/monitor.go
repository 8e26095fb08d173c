package health

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// MonitorConfig configures a Monitor: the health Config and the hooks
// through which the Monitor sees the links and reports on them.
type MonitorConfig struct {
	Config

	// Targets iterates over the current links, each with its State (it
	// has the shape of iter.Seq2[Target, *State]). It is called once per
	// sweep, and must stop when yield returns false. yield does no I/O
	// and never blocks (it only notes which links need a probe; they are
	// probed once the iteration is over), but the sweep yields the
	// processor every BatchSize links from within it, so Targets should
	// hold no lock while it calls yield (peer.Table.Range does not).
	// Required.
	Targets func(yield func(Target, *State) bool)

	// OnResult, if set, is called after every probe with its result,
	// after the result has been recorded in the link's State.
	OnResult func(Target, Result)

	// OnDead, if set, is called when a link has failed FailureThreshold
	// checks in a row, once per link; the manager closes the link. It is
	// called after OnResult.
	//
	// Both hooks are called from the sweep's workers, concurrently for
	// different links, each holding one of the MaxInFlight slots; a hook
	// that blocks holds up the sweep.
	OnDead func(Target, Result)

	// Now returns the current time, for NeedsCheck and Result.Time; nil
	// selects time.Now. Timers (Interval, Timeout) always run on the
	// time package's clock, which testing/synctest fakes.
	Now func() time.Time
}

// Monitor checks the health of a set of links: every Interval, it sweeps
// them and probes those that need it. Create one with NewMonitor; start
// it with Run, or drive it with Sweep.
type Monitor struct {
	cfg       Config // defaults filled in
	targets   func(yield func(Target, *State) bool)
	onResult  func(Target, Result)
	onDead    func(Target, Result)
	now       func() time.Time
	threshold uint32
	sem       chan struct{} // MaxInFlight probe slots, shared by all sweeps

	mu    sync.Mutex
	spare []probe // a sweep's candidates buffer, kept for the next sweep
}

// probe is a link that a sweep is to probe.
type probe struct {
	t  Target
	st *State
}

// maxSpare bounds the candidates buffer a Monitor keeps between sweeps
// (24 bytes an entry); one grown past it by a burst is dropped.
const maxSpare = 1 << 16

// NewMonitor returns a Monitor, or an error wrapping ErrInvalidConfig that
// names the bad field. It starts nothing.
func NewMonitor(cfg MonitorConfig) (*Monitor, error) {
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	if cfg.Targets == nil {
		return nil, fmt.Errorf("%w: Targets is nil, want the function that iterates over the links", ErrInvalidConfig)
	}
	c := cfg.Config.withDefaults()
	m := &Monitor{
		cfg:       c,
		targets:   cfg.Targets,
		onResult:  cfg.OnResult,
		onDead:    cfg.OnDead,
		now:       cfg.Now,
		threshold: uint32(c.FailureThreshold),
		sem:       make(chan struct{}, c.MaxInFlight),
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Config returns the Monitor's configuration, defaults filled in.
func (m *Monitor) Config() Config { return m.cfg }

// Run sweeps the links every Interval, the first time at once, until ctx
// ends. A sweep that lasts longer than Interval is followed at once by the
// next. When ctx ends, probes in flight are cut short (their results are
// neither recorded nor reported) and Run returns once they have all
// returned. It starts no goroutine that outlives it.
func (m *Monitor) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		m.Sweep(ctx)
		timer.Reset(m.cfg.Interval - time.Since(start))
	}
}

// Sweep examines every link once, now, and probes those that need it
// (State.NeedsCheck with IdleThreshold), at most MaxInFlight at once; it
// returns when those probes are done, with the number of links probed
// and the number of those found unhealthy. Each result is recorded in
// the link's State, then given to OnResult, and to OnDead if the link is
// dead. Probes cut short because ctx ended are not counted, recorded or
// reported. Run calls Sweep; the manager may too (an on-demand health
// check), at the same time: the sweeps share the MaxInFlight slots.
//
// Examining a link costs a LastActivity call and a NeedsCheck (a few
// nanoseconds, no allocation); a sweep of links that all had recent
// activity probes nothing and starts no goroutine.
func (m *Monitor) Sweep(ctx context.Context) (checked, unhealthy int) {
	m.mu.Lock()
	buf := m.spare[:0]
	m.spare = nil
	m.mu.Unlock()

	idle, batch := m.cfg.IdleThreshold, m.cfg.BatchSize
	now := m.now()
	left := batch
	stopped := false
	m.targets(func(t Target, st *State) bool {
		if left == 0 {
			// Between batches: let other goroutines run, and look again
			// at the clock and at ctx.
			left = batch
			runtime.Gosched()
			if ctx.Err() != nil {
				stopped = true
				return false
			}
			now = m.now()
		}
		left--
		la := t.LastActivity()
		if st.NeedsCheck(now, la, idle) {
			buf = append(buf, probe{t, st})
		} else {
			st.noteActivity(t, la)
		}
		return true
	})

	if !stopped && len(buf) > 0 {
		var nChecked, nUnhealthy atomic.Int64
		forEach(ctx, len(buf), m.cfg.MaxInFlight, m.sem, func(i int) {
			p := buf[i]
			r := check(ctx, p.t, m.cfg.Timeout, m.now)
			if ctx.Err() != nil {
				return // cut short: says nothing about the link
			}
			dead := p.st.observe(r, m.threshold)
			nChecked.Add(1)
			if !r.Healthy {
				nUnhealthy.Add(1)
			}
			if m.onResult != nil {
				m.onResult(p.t, r)
			}
			if dead && m.onDead != nil {
				m.onDead(p.t, r)
			}
		})
		checked, unhealthy = int(nChecked.Load()), int(nUnhealthy.Load())
	}

	if cap(buf) <= maxSpare {
		clear(buf) // drop the references to links that may be closed
		m.mu.Lock()
		m.spare = buf[:0]
		m.mu.Unlock()
	}
	return checked, unhealthy
}
