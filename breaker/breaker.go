package breaker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
)

// Defaults that a zero Settings field selects.
const (
	DefaultFailureThreshold    uint32 = 5
	DefaultOpenTimeout                = 30 * time.Second
	DefaultHalfOpenMaxRequests uint32 = 1
	DefaultInterval                   = 60 * time.Second
)

var (
	// ErrOpen is wrapped by the error Execute returns when a peer's
	// circuit refuses a dial: it is open, or half-open with all its trial
	// slots taken. The error is an *OpenError, which says which.
	ErrOpen = errors.New("breaker: circuit open")

	// ErrInvalidSettings is wrapped by Validate's and NewRegistry's error;
	// the message names the field that is wrong.
	ErrInvalidSettings = errors.New("breaker: invalid settings")
)

// State is the state of one peer's circuit.
type State uint8

const (
	// StateClosed lets every dial through and counts failures.
	StateClosed State = iota
	// StateHalfOpen lets a few trial dials through; their outcome closes
	// or re-opens the circuit.
	StateHalfOpen
	// StateOpen refuses every dial until OpenTimeout has passed.
	StateOpen
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	case gobreaker.StateOpen:
		return StateOpen
	default:
		return StateClosed
	}
}

// Settings configures every circuit of a Registry. The zero value selects
// the defaults; DefaultSettings spells them out.
type Settings struct {
	// FailureThreshold is the number of consecutive failures that opens a
	// circuit: with 5, the 5th failure in a row opens it. 0 selects
	// DefaultFailureThreshold. (gobreaker's own default trips on the 6th,
	// ConsecutiveFailures > 5; this package does not use it.)
	FailureThreshold uint32

	// OpenTimeout is how long a circuit stays open before it lets trial
	// dials through (half-open). 0 selects DefaultOpenTimeout; negative
	// is invalid.
	OpenTimeout time.Duration

	// HalfOpenMaxRequests is the number of trial dials a half-open
	// circuit lets through, in total, not at once: it closes when that
	// many have succeeded in a row, and re-opens on the first that fails.
	// A trial whose error is excluded gives its slot back. 0 selects 1.
	HalfOpenMaxRequests uint32

	// Interval is the counting window of a closed circuit: Interval after
	// the window started its counts reset, so failures spread thinly over
	// a long time do not open it. 0 selects DefaultInterval; negative
	// means the counts never reset while closed (only a success resets
	// the consecutive failure count).
	Interval time.Duration

	// IsExcluded reports errors that say nothing about the peer's health
	// and must count neither as failure nor as success: a gater refusal,
	// the manager closing. It is never called with a nil error. Whatever
	// it says, errors for which errors.Is(err, context.Canceled) holds
	// are always excluded: the caller gave up, the peer did not fail.
	// context.DeadlineExceeded is not excluded, since a dial timing out is
	// what an unreachable peer looks like. nil excludes nothing more.
	IsExcluded func(error) bool

	// Clock times the open state and the closed-state window; nil is the
	// real clock. The connection manager passes its Config.Clock, so that
	// a circuit opened under a fake clock half-opens when that clock has
	// moved OpenTimeout on, however little real time has passed.
	Clock clock.Clock
}

// DefaultSettings returns the settings the zero Settings stands for, with
// every default written out.
func DefaultSettings() Settings {
	return Settings{
		FailureThreshold:    DefaultFailureThreshold,
		OpenTimeout:         DefaultOpenTimeout,
		HalfOpenMaxRequests: DefaultHalfOpenMaxRequests,
		Interval:            DefaultInterval,
	}
}

// Validate reports what is wrong with s; the error wraps
// ErrInvalidSettings and names the field.
func (s Settings) Validate() error {
	if s.OpenTimeout < 0 {
		return fmt.Errorf("%w: OpenTimeout is %v, want 0 (the default, %v) or more",
			ErrInvalidSettings, s.OpenTimeout, DefaultOpenTimeout)
	}
	return nil
}

// withDefaults returns s with its zero fields replaced by the defaults.
// Interval keeps its sign: negative still means "never reset".
func (s Settings) withDefaults() Settings {
	if s.FailureThreshold == 0 {
		s.FailureThreshold = DefaultFailureThreshold
	}
	if s.OpenTimeout == 0 {
		s.OpenTimeout = DefaultOpenTimeout
	}
	if s.HalfOpenMaxRequests == 0 {
		s.HalfOpenMaxRequests = DefaultHalfOpenMaxRequests
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	return s
}

// StateChange is what a Registry's onChange function is told when a
// peer's circuit changes state.
type StateChange struct {
	Peer     peer.ID
	From, To State
	Time     time.Time // when the change was made (which for open→half-open is when it was noticed; see Registry.State)
}

// OpenError is the error Execute returns when a circuit refuses a dial.
// It wraps ErrOpen.
type OpenError struct {
	Peer peer.ID
	// State is StateOpen, or StateHalfOpen when the trial slots are taken.
	State State
	// Until is, for StateOpen, the time from which the circuit lets a
	// trial dial through: a good moment to try again. It is zero for
	// StateHalfOpen (retry when the trial in flight has finished).
	Until time.Time

	maxTrials uint32
}

func (e *OpenError) Error() string {
	if e.State == StateHalfOpen {
		return fmt.Sprintf("%v: peer %s: half-open, its %d trial dial(s) already taken",
			ErrOpen, e.Peer.ShortString(), e.maxTrials)
	}
	if e.Until.IsZero() {
		return fmt.Sprintf("%v: peer %s: open", ErrOpen, e.Peer.ShortString())
	}
	return fmt.Sprintf("%v: peer %s: open until %s",
		ErrOpen, e.Peer.ShortString(), e.Until.Format("15:04:05.000"))
}

// Unwrap returns ErrOpen.
func (e *OpenError) Unwrap() error { return ErrOpen }

// errPanicked is the failure counted for a dial function that panicked.
var errPanicked = errors.New("breaker: dial function panicked")

// Registry holds one circuit breaker per peer. The connection manager
// sends every dial to a peer through that peer's circuit, so that a peer
// that keeps failing is not dialed in a tight loop. It is safe for
// concurrent use.
//
// A circuit is created on the peer's first Execute; State and Counts do
// not create one. Remove forgets a peer's circuit.
//
// Circuits live in a peer.Table, the project's sharded map, rather than
// in one RWMutex-guarded map: the table lock is held only to find a
// circuit (the breaker's work happens afterwards, under the circuit's own
// mutex), and with 64 shards dials to different peers on different cores
// almost never wait for one another, where a single RWMutex would bounce
// its reader count between every core dialing at once. The shards cost a
// fixed ~8 KiB, nothing next to a table of 100k circuits.
//
// Time is the Registry's clock (Settings.Clock), never gobreaker's:
// gobreaker reads time.Now itself and has no clock to inject. So
// gobreaker counts and keeps the state, and the Registry times it:
//   - gobreaker's open state lasts 1 ns; the Registry keeps a circuit
//     open until its own clock passes openUntil, and only then lets
//     gobreaker look (and turn half-open). Every call into gobreaker runs
//     under the circuit's mutex, after that check, so no look can slip in
//     between the opening and openUntil being set.
//   - gobreaker never resets a closed circuit's counts (Interval 0); the
//     Registry starts a fresh gobreaker breaker when its own window ends,
//     and drops the outcomes of dials let through by the one it replaced,
//     as gobreaker drops those of an earlier generation.
type Registry struct {
	circuits   *peer.Table[*circuit]
	template   gobreaker.Settings // OnStateChange is set per breaker
	settings   Settings           // with defaults applied
	clock      clock.Clock
	onChange   func(StateChange)
	isExcluded func(error) bool // the user's, or nil
}

// circuit is one peer's breaker plus its timing, which gobreaker cannot
// take from an injected clock.
type circuit struct {
	// mu is held across every call into cb (never across a dial), so
	// that checking openUntil and gobreaker's lazy transitions happen as
	// one step.
	mu sync.Mutex
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// windowEnd is when a closed circuit's counts reset, in the clock's
	// Unix nanoseconds; 0 for never, and while the circuit is not closed.
	// Guarded by mu.
	windowEnd int64
	// openUntil is when the circuit, last opened, lets a trial through,
	// in the clock's Unix nanoseconds; written under mu (by the
	// state-change hook), read by refused Executes after it.
	openUntil atomic.Int64
	// removed is set by Remove; the hook then reports no more changes
	// for this circuit, which calls in flight may still drive.
	removed atomic.Bool
	id      peer.ID
}

// NewRegistry returns an empty registry whose circuits use s.
//
// onChange, if not nil, is called on every state change of every circuit.
// It is called synchronously, from the goroutine whose Execute, State or
// Counts call made the change, while that circuit's mutex is held:
//
//   - it must not block: until it returns, every dial to that peer (and
//     the dial that made the change) waits;
//   - it must not call Execute, State or Counts: on the same peer they
//     deadlock on the circuit's mutex, on another peer they can deadlock
//     with that peer's own onChange (Len and Remove are safe);
//   - it is called concurrently for different peers, so it must be safe
//     for concurrent use; one peer's changes arrive in order.
//
// Hand the change on with a non-blocking channel send or to a queue.
func NewRegistry(s Settings, onChange func(StateChange)) (*Registry, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.withDefaults()
	r := &Registry{
		circuits:   peer.NewTable[*circuit](0),
		settings:   s,
		clock:      s.Clock,
		onChange:   onChange,
		isExcluded: s.IsExcluded,
	}
	if r.clock == nil {
		r.clock = clock.Real()
	}
	threshold := s.FailureThreshold
	r.template = gobreaker.Settings{
		MaxRequests: s.HalfOpenMaxRequests,
		Interval:    0,               // never: the Registry's window (see Registry)
		Timeout:     time.Nanosecond, // at once: the Registry keeps it open
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= threshold
		},
		IsExcluded: r.excluded,
		// IsSuccessful: gobreaker's default, err == nil.
	}
	return r, nil
}

// excluded is the IsExcluded given to gobreaker. gobreaker calls it for
// every outcome, nil included, before IsSuccessful.
func (r *Registry) excluded(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return true
	}
	return r.isExcluded != nil && r.isExcluded(err)
}

func (r *Registry) newCircuit(id peer.ID) *circuit {
	c := &circuit{id: id}
	r.renew(c, r.clock.Now().UnixNano())
	return c
}

// renew gives c a fresh, closed gobreaker breaker whose window starts at
// now. c.mu must be held, or c not yet shared.
func (r *Registry) renew(c *circuit, now int64) {
	st := r.template
	var cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	st.OnStateChange = func(_ string, from, to gobreaker.State) {
		if c.cb == cb { // a replaced breaker is never called again, but be sure
			r.stateChanged(c, from, to)
		}
	}
	cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	c.cb = cb
	c.windowEnd = r.windowEnd(now)
}

// windowEnd is when a closed-state window starting at now ends.
func (r *Registry) windowEnd(now int64) int64 {
	if r.settings.Interval < 0 {
		return 0
	}
	return now + int64(r.settings.Interval)
}

// stateChanged runs under c.mu, inside a gobreaker call.
func (r *Registry) stateChanged(c *circuit, from, to gobreaker.State) {
	now := r.clock.Now()
	switch to {
	case gobreaker.StateOpen:
		c.openUntil.Store(now.Add(r.settings.OpenTimeout).UnixNano())
		c.windowEnd = 0
	case gobreaker.StateHalfOpen:
		c.windowEnd = 0
	case gobreaker.StateClosed:
		c.windowEnd = r.windowEnd(now.UnixNano())
	}
	if r.onChange == nil || c.removed.Load() {
		return
	}
	r.onChange(StateChange{Peer: c.id, From: fromGobreaker(from), To: fromGobreaker(to), Time: now})
}

// openLocked brings c up to date at now and reports whether it is open:
// while the clock is before openUntil it is, and gobreaker is not asked
// (so it cannot half-open early); otherwise a closed circuit whose window
// has ended starts a new one. c.mu must be held.
func (r *Registry) openLocked(c *circuit, now int64) bool {
	if now < c.openUntil.Load() {
		return true
	}
	if c.windowEnd != 0 && now >= c.windowEnd { // windowEnd is 0 unless closed
		r.renew(c, now)
	}
	return false
}

// lookLocked returns c's state at now, making any change that is due
// (half-open, a new window). c.mu must be held.
func (r *Registry) lookLocked(c *circuit, now int64) State {
	if r.openLocked(c, now) {
		return StateOpen
	}
	return fromGobreaker(c.cb.State()) // an open breaker half-opens here
}

// Execute runs fn through id's circuit, creating the circuit on id's first
// use. If the circuit refuses (open, or half-open with its trial slots
// taken) fn is not called and Execute returns an *OpenError, which wraps
// ErrOpen. Otherwise it returns fn's error unchanged, after counting it:
// nil as a success, an excluded error (see Settings.IsExcluded) not at all,
// any other as a failure. If fn panics, that counts as a failure and the
// panic goes on up.
//
// An outcome is dropped, uncounted, if the circuit changed state or its
// closed-state window reset while fn ran: a dial begun before the circuit
// opened does not close it by succeeding afterwards.
func (r *Registry) Execute(id peer.ID, fn func() error) error {
	c, _ := r.circuits.LoadOrCreate(id, func() *circuit { return r.newCircuit(id) })
	c.mu.Lock()
	var done func(error)
	refused := gobreaker.ErrOpenState
	if !r.openLocked(c, r.clock.Now().UnixNano()) {
		done, refused = c.cb.Allow() // an open breaker half-opens here
	}
	cb := c.cb
	c.mu.Unlock()
	if refused != nil {
		e := &OpenError{Peer: id, State: StateOpen, maxTrials: r.settings.HalfOpenMaxRequests}
		if errors.Is(refused, gobreaker.ErrTooManyRequests) {
			e.State = StateHalfOpen
		} else if until := c.openUntil.Load(); until != 0 {
			e.Until = time.Unix(0, until)
		}
		return e
	}
	// A panicking fn counts as a failure; without a recover, the panic
	// goes on up with its own stack once finish has run.
	returned := false
	defer func() {
		if !returned {
			r.finish(c, cb, done, errPanicked)
		}
	}()
	err := fn()
	returned = true
	r.finish(c, cb, done, err)
	return err
}

// finish reports the outcome of a dial that cb let through. A dial let
// through before the window ended, or before the circuit opened (nothing
// is let through while it is open), is from an earlier state: its outcome
// is dropped, without a look that would half-open gobreaker early.
func (r *Registry) finish(c *circuit, cb *gobreaker.TwoStepCircuitBreaker[struct{}], done func(error), err error) {
	c.mu.Lock()
	if !r.openLocked(c, r.clock.Now().UnixNano()) && c.cb == cb {
		done(err)
	}
	c.mu.Unlock()
}

// State returns id's circuit state, StateClosed for a peer without one.
// Nothing runs on timers: an open circuit becomes half-open when someone
// looks after OpenTimeout has passed on the Registry's clock, and State
// is such a look, so it may itself make the open→half-open change (and
// call onChange).
func (r *Registry) State(id peer.ID) State {
	c, ok := r.circuits.Get(id)
	if !ok {
		return StateClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return r.lookLocked(c, r.clock.Now().UnixNano())
}

// Counts returns, for id's circuit in its current state (or closed-state
// window), the number of dials let through whose outcome was not excluded
// (dials in flight included), and the number of failures in a row. Both
// are 0 for a peer without a circuit. Counts first brings the circuit up
// to date, as State does.
func (r *Registry) Counts(id peer.ID) (requests, consecutiveFailures uint32) {
	c, ok := r.circuits.Get(id)
	if !ok {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.lookLocked(c, r.clock.Now().UnixNano())
	n := c.cb.Counts()
	requests = n.Requests
	if n.TotalExclusions < requests {
		requests -= n.TotalExclusions
	} else {
		requests = 0
	}
	return requests, n.ConsecutiveFailures
}

// Remove forgets id's circuit; id's next Execute starts a closed one.
// Calls already running on the old circuit finish on it, uncounted by
// the new one; the old circuit reports no state change that begins after
// Remove returns.
func (r *Registry) Remove(id peer.ID) {
	c, ok := r.circuits.Get(id)
	if !ok {
		return
	}
	if r.circuits.DeleteIf(id, func(v *circuit) bool { return v == c }) {
		c.removed.Store(true)
	}
}

// Len returns the number of peers with a circuit. While other goroutines
// create or remove circuits it is a close count, not an exact one.
func (r *Registry) Len() int {
	return r.circuits.Len()
}
