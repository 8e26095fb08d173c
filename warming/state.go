package warming

import "strconv"

// State is where a peer stands in warming. The zero value is Cold.
type State uint8

const (
	// Cold: no warm link; never warmed, or the warm link closed.
	Cold State = iota
	// Warming: an attempt (dial, handshake, ping) is under way.
	Warming
	// Warm: a link is open, its handshake done and its round trip
	// measured by a ping.
	Warm
	// Failed: the last attempt failed; the peer is retried once its
	// retry time has passed (see Policy.RetryAt).
	Failed
)

var stateNames = [...]string{Cold: "cold", Warming: "warming", Warm: "warm", Failed: "failed"}

// String returns the state in lower case, as in "warm"; a value outside
// the constants prints as "state(N)".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Event is what happens to a peer's warming.
type Event uint8

const (
	// Start: an attempt begins.
	Start Event = iota + 1
	// Succeed: the attempt's link is up and answered its ping.
	Succeed
	// Fail: the attempt's dial or ping failed.
	Fail
	// Abort: the attempt ended for a reason that says nothing of the
	// peer: the caller gave up, the node is closing, or its own
	// connection limit refused the dial.
	Abort
	// LinkLost: the peer's warm link closed.
	LinkLost
)

var eventNames = [...]string{Start: "start", Succeed: "succeed", Fail: "fail", Abort: "abort", LinkLost: "link lost"}

func (e Event) String() string {
	if e > 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "event(" + strconv.Itoa(int(e)) + ")"
}

// Next returns the state that e leads to from s, and whether it is a
// change (see the table in the package documentation). A pair outside
// the table returns s and false: Start on a peer already warming or warm
// starts nothing, and a link lost during an attempt is for the attempt to
// find out.
func Next(s State, e Event) (State, bool) {
	switch {
	case e == Start && (s == Cold || s == Failed):
		return Warming, true
	case s == Warming && e == Succeed:
		return Warm, true
	case s == Warming && e == Fail:
		return Failed, true
	case s == Warming && e == Abort:
		return Cold, true
	case s == Warm && e == LinkLost:
		return Cold, true
	}
	return s, false
}

// Transition is one change of a peer's state, as events report it.
type Transition struct {
	From, To State
}

func (t Transition) String() string { return t.From.String() + " → " + t.To.String() }

// Role is why a peer is warm, as the last Plan decided.
type Role uint8

const (
	// None: not chosen by the keep-warm policy (warmed by the
	// application, or chosen once and since displaced).
	None Role = iota
	// Kept: one of the MinWarm peers kept warm.
	Kept
	// Extra: warmed for preemptive scaling; left to expire when idle.
	Extra
)

var roleNames = [...]string{None: "none", Kept: "kept", Extra: "extra"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}
