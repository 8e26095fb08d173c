package peerlink

import (
	"fmt"
	"slices"
	"time"

	"github.com/peerlink/peerlink/health"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// Status returns the state of the link to id.
func (m *ConnectionManager) Status(id peer.ID) peer.Status {
	r, ok := m.peers.Get(id)
	if !ok {
		return peer.StatusDisconnected
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.link != nil && !r.link.dead():
		return peer.StatusConnected
	case (r.dial != nil && !r.dial.resolved()) || !r.admitted.IsZero():
		// A resolved dial's waiters have their answer; its goroutine may
		// still be calling off other attempts, which is no connecting.
		return peer.StatusConnecting
	case r.link != nil: // died, not yet detached
		return peer.StatusDisconnecting
	}
	return peer.StatusDisconnected
}

// ConnectionInfo describes one open link.
type ConnectionInfo struct {
	Peer       peer.ID
	Link       LinkID
	Direction  transport.Direction
	LocalAddr  string
	RemoteAddr string
	OpenedAt   time.Time
	// Streams open now, and of them how many each side opened.
	Streams, InboundStreams, OutboundStreams int
	// BytesIn and BytesOut count bytes on the wire, framing included.
	BytesIn, BytesOut uint64
	// Health is the link's health record: RTTs of its checks and their
	// failures.
	Health health.Stats
}

func (l *link) info() ConnectionInfo {
	in, out := l.sess.StreamCounts()
	return ConnectionInfo{
		Peer:            l.peer,
		Link:            l.id,
		Direction:       l.dir(),
		LocalAddr:       l.conn.LocalAddr().String(),
		RemoteAddr:      l.conn.RemoteAddr().String(),
		OpenedAt:        l.openedAt,
		Streams:         in + out,
		InboundStreams:  in,
		OutboundStreams: out,
		BytesIn:         l.sess.BytesIn(),
		BytesOut:        l.sess.BytesOut(),
		Health:          l.health.Snapshot(),
	}
}

// ConnectionInfo returns the link to id, or ErrNotConnected.
func (m *ConnectionManager) ConnectionInfo(id peer.ID) (ConnectionInfo, error) {
	l := m.openLink(id)
	if l == nil {
		return ConnectionInfo{}, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	return l.info(), nil
}

// Links returns every open link, in peer ID order. With the link IDs in
// events it lets a subscriber that dropped events (Subscription.Dropped)
// resynchronise: subscribe first, then take Links as the state, then
// apply events, ignoring an EventConnected whose Link is already known
// and an EventDisconnected for a Link it no longer has.
func (m *ConnectionManager) Links() []ConnectionInfo {
	links := m.liveLinks()
	out := make([]ConnectionInfo, len(links))
	for i, l := range links {
		out[i] = l.info()
	}
	slices.SortFunc(out, func(a, b ConnectionInfo) int { return a.Peer.Compare(b.Peer) })
	return out
}

// openLink returns id's open link, or nil.
func (m *ConnectionManager) openLink(id peer.ID) *link {
	r, ok := m.peers.Get(id)
	if !ok {
		return nil
	}
	r.mu.Lock()
	l := r.link
	r.mu.Unlock()
	if l == nil || l.dead() {
		return nil
	}
	return l
}

// liveLinks returns every open link.
func (m *ConnectionManager) liveLinks() []*link {
	var links []*link
	for _, r := range m.peers.Range {
		r.mu.Lock()
		if l := r.link; l != nil && !l.dead() {
			links = append(links, l)
		}
		r.mu.Unlock()
	}
	return links
}

// StreamStats describes the streams and the write queue of one link.
type StreamStats struct {
	// Open streams by priority (index mux.PriorityLow..PriorityCritical),
	// both directions, and the link's limit (lowered on long links to fit
	// PeerMemoryBudget) and stream window.
	ByPriority [mux.NumPriorities]int
	Limit      int
	Window     uint32
	// SlotWaiters is how many OpenStream calls wait for a slot of the
	// link's limit now.
	SlotWaiters int
	// Queues are the write scheduler's figures per priority: writes
	// waiting, bytes queued, chunks served, time waited, refusals.
	Queues [mux.NumPriorities]mux.QueueStats
	// QueueUtilization is the bytes queued over MaxQueuedBytes.
	QueueUtilization float64
}

// StreamStats returns the stream and queue figures of the link to id.
func (m *ConnectionManager) StreamStats(id peer.ID) (StreamStats, error) {
	l := m.openLink(id)
	if l == nil {
		return StreamStats{}, fmt.Errorf("%w: %s", ErrNotConnected, id.ShortString())
	}
	cfg := l.sess.Config()
	return StreamStats{
		ByPriority:       l.sess.StreamsByPriority(),
		Limit:            cfg.MaxStreams,
		Window:           cfg.StreamWindow,
		SlotWaiters:      l.sess.SlotWaiters(),
		Queues:           l.sess.QueueStats(),
		QueueUtilization: l.sess.Utilization(),
	}, nil
}

// Peers returns the IDs of the peers with an open link, in ID order.
func (m *ConnectionManager) Peers() []peer.ID {
	links := m.liveLinks()
	ids := make([]peer.ID, len(links))
	for i, l := range links {
		ids[i] = l.peer
	}
	slices.SortFunc(ids, peer.ID.Compare)
	return ids
}

// ConnectionCount returns the number of open links: those counted
// against the limits. A link stops counting when Disconnect (or any other
// close) returns, before its socket and handlers are done.
func (m *ConnectionManager) ConnectionCount() int {
	return int(m.conns.Load())
}

// Subscribe returns a subscription to link events with room for buffer
// undelivered events (0 means DefaultEventBuffer).
func (m *ConnectionManager) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return m.events.subscribe(buffer)
}
