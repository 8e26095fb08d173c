package health

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// Result is the outcome of one check of a link.
type Result struct {
	Peer peer.ID
	// RTT is the probe's round-trip time, when Healthy and not Skipped.
	RTT time.Duration
	// Healthy: the probe was answered (or, with Skipped, bytes arrived).
	Healthy bool
	// Err is why the probe failed; nil when Healthy.
	Err error
	// Time is when the check was made: when the probe was sent, or for a
	// Skipped result when bytes last arrived. Observe takes it as the
	// link's last check, so it must be set.
	Time time.Time
	// Skipped: not probed, because bytes arrived recently; that is as
	// good a sign of life as an answered ping, without an RTT sample.
	Skipped bool
}

// Stats are a State's figures. A scorer builds on RTTEWMA and the failure
// counts.
type Stats struct {
	// LastRTT is the RTT of the last answered probe; RTTEWMA the
	// exponentially weighted moving average of all of them, with weight
	// 0.2 for the newest: ewma += (rtt - ewma) / 5, the first sample
	// taken as it is (so the last ten samples carry 89% of the weight).
	LastRTT, RTTEWMA time.Duration
	// Samples counts answered probes (RTT samples); Failures failed ones;
	// ConsecutiveFailures the failures since the last success (or since
	// bytes last arrived: see Observe).
	Samples, Failures, ConsecutiveFailures uint64
	// ErrorsSinceCheck counts RecordError calls since the last check.
	ErrorsSinceCheck uint64
	// LastCheck is when the link was last checked (Result.Time), zero if
	// it never was.
	LastCheck time.Time
	// LastErr is the error of the last failed probe, kept after a success.
	LastErr error
	// Dead: Observe has declared the link dead.
	Dead bool
}

// State is one link's health record; the manager keeps one per link,
// made with NewState or Config.NewState when the link comes up. All
// methods are safe for concurrent use. NeedsCheck and RecordError, which
// run on every sweep and on every failed operation, take no lock (they
// are a few atomic loads or one atomic add); Observe and Snapshot take
// the State's mutex.
//
// A State is small: 112 bytes on 64-bit platforms (BenchmarkSweepIdle
// reports it as B/link).
type State struct {
	// base is the time the State was made. The times below are kept as
	// nanosecond offsets from it, so that they fit in atomics and are
	// compared on the monotonic clock whenever the caller's times carry
	// a monotonic reading (time.Now's do).
	base      time.Time
	lastCheck atomic.Int64  // offset of the last check (0 until one)
	errs      atomic.Uint64 // RecordError calls since the last check
	consec    atomic.Uint32 // consecutive failures; written under mu
	dead      atomic.Bool   // declared dead; written under mu
	threshold uint32        // FailureThreshold for Observe; immutable
	checked   bool          // any check observed; under mu (here, it fills a hole)

	mu       sync.Mutex
	lastRTT  time.Duration
	ewma     time.Duration
	samples  uint64
	failures uint64
	lastErr  error
}

// NewState returns the State of a link that comes up now; it counts as
// checked at now, so the link needs no probe before IdleThreshold has
// passed. It declares the link dead after DefaultFailureThreshold
// consecutive failures; Config.NewState uses the config's threshold.
func NewState(now time.Time) *State {
	return &State{base: now, threshold: DefaultFailureThreshold}
}

// NeedsCheck reports whether the link needs a probe at now: when errors
// were recorded since its last check; when its last check failed and no
// bytes have arrived since (a run of failures goes on at every sweep
// until the link answers or is declared dead); or when it has been idle
// for at least idle, counting from the later of lastActivity (when bytes
// last arrived on it) and its last check. A link declared dead needs
// none. It does no I/O and takes no lock.
//
// A failing link does not wait for idle to pass again: a sweep reads the
// clock before it goes over the links and probes them after, so the
// next sweep, Interval later, finds the last probe a little less than
// Interval ago, and with idle equal to Interval (the default) a failing
// link would be probed only every other sweep.
func (s *State) NeedsCheck(now, lastActivity time.Time, idle time.Duration) bool {
	if s.dead.Load() {
		return false
	}
	if s.errs.Load() > 0 {
		return true
	}
	since := s.base.Add(time.Duration(s.lastCheck.Load()))
	if lastActivity.After(since) {
		since = lastActivity
	} else if s.consec.Load() > 0 {
		return true
	}
	return now.Sub(since) >= idle
}

// RecordError notes that an operation on the link failed (an OpenStream,
// a write); the link then needs a check at the next sweep, whatever its
// activity.
func (s *State) RecordError() {
	s.errs.Add(1)
}

// Observe records the result of a check: the link was checked at r.Time
// (a later check already recorded is kept), and the errors recorded
// before are cleared. A healthy result is an RTT sample and ends any run
// of failures; so does a Skipped one (bytes arrived), without a sample.
// A failed one counts, and Observe returns true when it is the
// threshold-th failure in a row (DefaultFailureThreshold, or the one given
// to Config.NewState). It does so once in the State's life: the link is
// dead, and the manager closes it. A Monitor applies its own
// Config.FailureThreshold instead.
func (s *State) Observe(r Result) (dead bool) {
	return s.observe(r, s.threshold)
}

func (s *State) observe(r Result, threshold uint32) (dead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.Time.IsZero() {
		if off := int64(r.Time.Sub(s.base)); off > s.lastCheck.Load() {
			s.lastCheck.Store(off)
		}
		s.checked = true
	}
	s.errs.Store(0)
	switch {
	case r.Skipped:
		s.consec.Store(0)
	case r.Healthy:
		s.consec.Store(0)
		s.lastRTT = r.RTT
		if s.samples == 0 {
			s.ewma = r.RTT
		} else {
			s.ewma += (r.RTT - s.ewma) / 5 // alpha 0.2
		}
		s.samples++
	default:
		s.failures++
		s.lastErr = r.Err
		n := s.consec.Load() + 1
		s.consec.Store(n)
		if n >= threshold && !s.dead.Load() {
			s.dead.Store(true)
			return true
		}
	}
	return false
}

// noteActivity is the sweep's word for a link it did not probe: if the
// link has a run of failures and bytes have arrived since its last check,
// the run is over (a Skipped result). One atomic load when there is no
// run.
func (s *State) noteActivity(t Target, lastActivity time.Time) {
	if s.consec.Load() == 0 || s.dead.Load() {
		return
	}
	if int64(lastActivity.Sub(s.base)) <= s.lastCheck.Load() {
		return
	}
	s.observe(Result{Peer: t.Peer(), Healthy: true, Skipped: true, Time: lastActivity}, s.threshold)
}

// ConsecutiveFailures returns the failed checks since the last success,
// from one atomic load (Snapshot takes the State's lock).
func (s *State) ConsecutiveFailures() uint64 { return uint64(s.consec.Load()) }

// Snapshot returns the State's figures, consistent with one another.
func (s *State) Snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		LastRTT:             s.lastRTT,
		RTTEWMA:             s.ewma,
		Samples:             s.samples,
		Failures:            s.failures,
		ConsecutiveFailures: uint64(s.consec.Load()),
		ErrorsSinceCheck:    s.errs.Load(),
		LastErr:             s.lastErr,
		Dead:                s.dead.Load(),
	}
	if s.checked {
		st.LastCheck = s.base.Add(time.Duration(s.lastCheck.Load()))
	}
	return st
}
