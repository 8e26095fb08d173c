package peerlink

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/warming"
)

// EventType says what happened to a link.
type EventType uint8

const (
	// EventConnected: a link to the peer is open and usable.
	EventConnected EventType = iota + 1
	// EventDisconnected: a link to the peer has closed; Reason says why.
	EventDisconnected
	// EventCircuit: the peer's circuit breaker changed state, From → To.
	EventCircuit
	// EventWarming: the peer's warming state changed (Warming.From →
	// Warming.To); Link is the link warmed, Err why an attempt failed.
	EventWarming
)

func (t EventType) String() string {
	switch t {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventCircuit:
		return "circuit"
	case EventWarming:
		return "warming"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// DisconnectReason says why a link closed.
type DisconnectReason uint8

const (
	// ReasonNone is the reason of events that are not disconnections.
	ReasonNone DisconnectReason = iota
	// ReasonLocal: this node called Disconnect.
	ReasonLocal
	// ReasonRemote: the remote closed the link cleanly.
	ReasonRemote
	// ReasonError: the link failed (I/O error, keepalive timeout); Err has it.
	ReasonError
	// ReasonReplaced: the link lost to another link to the same peer
	// (simultaneous dial, or the peer re-dialed).
	ReasonReplaced
	// ReasonShutdown: the manager is closing.
	ReasonShutdown
	// ReasonUnhealthy: the link failed Health.FailureThreshold health
	// checks in a row (a silent, black-holed link); Err has the last.
	// EvictUnhealthy closes links failing their checks with it too.
	ReasonUnhealthy
	// ReasonTrimmed: the node held more links than its watermarks or
	// limits allow, and this one ranked lowest (see TrimConfig).
	ReasonTrimmed
	// ReasonIdle: the link carried no stream for Idle.Timeout.
	ReasonIdle
)

func (r DisconnectReason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonLocal:
		return "local disconnect"
	case ReasonRemote:
		return "closed by remote"
	case ReasonError:
		return "link error"
	case ReasonReplaced:
		return "replaced by another link"
	case ReasonShutdown:
		return "manager shutdown"
	case ReasonUnhealthy:
		return "health checks failed"
	case ReasonTrimmed:
		return "trimmed"
	case ReasonIdle:
		return "idle"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event reports a change in a peer's link.
type Event struct {
	Type EventType
	Peer peer.ID
	// Link names the link (EventConnected, EventDisconnected). Per peer,
	// a link's EventDisconnected is published before the EventConnected
	// of the link that follows it.
	Link      LinkID
	Direction transport.Direction
	// Addr is the remote address of the link.
	Addr string
	// Reason and Err say why a link closed (EventDisconnected only).
	Reason DisconnectReason
	Err    error
	// From and To are the circuit breaker's states (EventCircuit only).
	From, To breaker.State
	// Warming is the change of the peer's warming state (EventWarming
	// only).
	Warming warming.Transition
	Time    time.Time
}

func (e Event) String() string {
	if e.Type == EventCircuit {
		return fmt.Sprintf("circuit %s %s → %s", e.Peer.ShortString(), e.From, e.To)
	}
	if e.Type == EventWarming {
		return warmingString(e)
	}
	s := fmt.Sprintf("%s %s %s %s %s", e.Type, e.Peer.ShortString(), e.Link, e.Direction, e.Addr)
	if e.Type == EventDisconnected {
		s += ": " + e.Reason.String()
		if e.Err != nil {
			s += ": " + e.Err.Error()
		}
	}
	return s
}

// Subscription delivers events on C. A subscriber that falls behind never
// blocks the manager: events that find C full are dropped and counted.
// C is closed by Close or when the manager closes.
type Subscription struct {
	C <-chan Event

	ch      chan Event
	bus     *eventBus
	mu      sync.Mutex // orders sends with close of ch
	closed  bool
	dropped atomic.Uint64
}

// Dropped returns how many events were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. It is safe to call twice.
func (s *Subscription) Close() {
	s.bus.remove(s)
	s.close()
}

func (s *Subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

func (s *Subscription) deliver(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

// eventBus fans events out to subscriptions. Publishing reads the list
// without a lock; subscribing copies it.
type eventBus struct {
	mu     sync.Mutex
	subs   atomic.Pointer[[]*Subscription]
	closed bool
}

func (b *eventBus) subscribe(buffer int) *Subscription {
	ch := make(chan Event, buffer)
	s := &Subscription{C: ch, ch: ch, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.closed = true
		close(ch)
		return s
	}
	var next []*Subscription
	if cur := b.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	b.subs.Store(&next)
	return s
}

func (b *eventBus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	next := make([]*Subscription, 0, len(*cur))
	for _, x := range *cur {
		if x != s {
			next = append(next, x)
		}
	}
	b.subs.Store(&next)
}

func (b *eventBus) publish(e Event) {
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	for _, s := range *cur {
		s.deliver(e)
	}
}

// close closes every subscription; later subscriptions start closed.
func (b *eventBus) close() {
	b.mu.Lock()
	b.closed = true
	cur := b.subs.Load()
	b.subs.Store(nil)
	b.mu.Unlock()
	if cur != nil {
		for _, s := range *cur {
			s.close()
		}
	}
}
