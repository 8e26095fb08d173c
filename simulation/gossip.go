package simulation

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

// Gossip travels as real gossip stacks carry it (gossipsub, devp2p): one
// long-lived outbound stream per peer, opened on first use and reopened
// after it fails, carrying length-prefixed frames; the receiver answers
// each frame with one acknowledgement byte on the same stream, in order,
// so that each copy is still a request in flight on its peer (counted in
// its load) until acknowledged, and its Selection.Done feeds the
// balancer. A stream per copy cost an open, a header, a FIN, a handler
// goroutine and about five packets per copy; this costs two packets.

// ErrGossipFrame is wrapped by the errors of a malformed gossip frame or
// acknowledgement; the stream it came on is reset.
var ErrGossipFrame = errors.New("simulation: malformed gossip frame")

// ErrGossipStreamFailed is a copy's error when the gossip stream it was
// to go on failed before it was written.
var ErrGossipStreamFailed = errors.New("simulation: gossip stream failed")

// A gossip frame: message ID, hop count, payload length, payload.
const gossipHeader = 8 + 2 + 4

// gossipAck is the byte a receiver answers each frame with.
const gossipAck = 1

// appendGossipFrame appends the frame of message id, hop links from its
// origin, with size bytes of payload (zeros).
func appendGossipFrame(b []byte, id uint64, hop, size int) []byte {
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint16(b, uint16(min(hop, 1<<16-1)))
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	return append(b, make([]byte, size)...)
}

// readGossipFrame reads one frame from r into h and discards its
// payload. At a frame boundary with nothing more it returns io.EOF; a
// payload announced larger than maxMessageSize is an ErrGossipFrame
// before any of it is read, since the bytes come from a peer.
func readGossipFrame(r io.Reader, h *[gossipHeader]byte) (id uint64, hop int, err error) {
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	id, hop = binary.BigEndian.Uint64(h[:]), int(binary.BigEndian.Uint16(h[8:]))
	size := int64(binary.BigEndian.Uint32(h[10:]))
	if size > maxMessageSize {
		return 0, 0, fmt.Errorf("%w: payload of %d bytes, at most %d", ErrGossipFrame, size, maxMessageSize)
	}
	if _, err := io.CopyN(io.Discard, r, size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	return id, hop, nil
}

// gossipState is an Agent's gossip links and the senders of the messages
// it is validating.
type gossipState struct {
	mu sync.Mutex
	// outs holds the outbound stream to each peer, while there is one
	// or copies wait for one: an entry goes when its link does (forget),
	// so peers that come and go leave nothing behind.
	outs map[peer.ID]*gossipOut
	// from holds, while a message is being validated, the peers it came
	// from, so that its forward skips them. Guarded by Agent.seenMu.
	from map[uint64][]peer.ID
}

// gossipOut is the outbound gossip stream to one peer, and its queue.
//
// A forward only queues its copies; one writer goroutine per peer, while
// the queue is not empty, writes them. So a peer whose stream stalls (a
// black-holed link, a full window) delays only its own copies, and a
// node's receive loops, which forward what they receive, never wait on
// another peer's window (two nodes forwarding to each other from their
// receive loops would otherwise deadlock once both windows were full).
// mu is never held across a wait: in a synctest bubble a goroutine
// blocked on a mutex is not durably blocked, so a reader waiting on mu
// behind a blocked Write would freeze the bubble's clock.
type gossipOut struct {
	p  peer.ID
	mu sync.Mutex  // guards the rest
	s  *mux.Stream // nil until opened, and after a failure
	// queue holds the copies not yet written; writing says a writer
	// goroutine runs (it exits when the queue is empty).
	queue   []queuedCopy
	writing bool
	// stop undoes the stream's reset at the agent's Close and its watch
	// on the link's end.
	stop func()
	// gone: removed from gossipState.outs; a sender that finds it so
	// takes a fresh one.
	gone bool
	// pending are the copies written (or being written) and not yet
	// acknowledged, in the order written: the acknowledgements' order.
	pending []gossipCopy
	// reading: an acknowledgement reader runs, for as long as pending
	// is not empty.
	reading bool
}

// queuedCopy is a copy waiting for its peer's writer: its frame (shared
// by the copies of one forward) and priority.
type queuedCopy struct {
	gossipCopy
	msg  []byte
	prio mux.Priority
}

// maxGossipQueue bounds the copies queued for one peer. Past it a copy
// fails at once with ErrGossipQueueFull, reported to its selection and
// the Observer: a peer that takes nothing cannot make a node buffer
// without bound.
const maxGossipQueue = 1024

// ErrGossipQueueFull is a copy's error when its peer's queue is full.
var ErrGossipQueueFull = errors.New("simulation: gossip queue to peer full")

// gossipCopy is one copy of a message in flight to a peer.
type gossipCopy struct {
	id    uint64
	sel   *peerlink.Selection
	start time.Time
}

// publishNext publishes the agent's next message.
func (a *Agent) publishNext() {
	a.seenMu.Lock()
	a.pubs++
	id := messageID(a.cfg.Node, a.cfg.Incarnation, a.pubs)
	a.markSeenLocked(id)
	a.seenMu.Unlock()
	a.obs.Published(a.cfg.Node, id)
	a.forward(id, 0, nil)
}

// maxSeen bounds the message IDs an agent remembers: far more than can
// be in flight, so that a forgotten message has long stopped spreading.
const maxSeen = 1 << 16

// markSeenLocked adds id to the seen set, forgetting the oldest past
// maxSeen. a.seenMu must be held.
func (a *Agent) markSeenLocked(id uint64) {
	if len(a.seenRing) < maxSeen {
		a.seenRing = append(a.seenRing, id)
	} else {
		delete(a.seen, a.seenRing[a.seenNext])
		a.seenRing[a.seenNext] = id
		a.seenNext = (a.seenNext + 1) % maxSeen
	}
	a.seen[id] = struct{}{}
}

// see marks id seen and reports whether it was new.
func (a *Agent) see(id uint64) bool {
	a.seenMu.Lock()
	defer a.seenMu.Unlock()
	return a.seeLocked(id)
}

// seeLocked is see with a.seenMu held.
func (a *Agent) seeLocked(id uint64) bool {
	if _, ok := a.seen[id]; ok {
		return false
	}
	a.markSeenLocked(id)
	return true
}

// received handles a copy of message id that came from peer from, hop
// links from its origin: a first copy is forwarded once validated
// (GossipSpec.Validation), to none of the peers it has come from by
// then.
func (a *Agent) received(id uint64, hop int, from peer.ID) {
	v := a.w.Gossip.Validation.D()
	if v == 0 {
		first := a.see(id)
		a.obs.Received(a.cfg.Node, id, from, hop, first)
		if first {
			a.forward(id, hop, []peer.ID{from})
		}
		return
	}
	a.seenMu.Lock()
	first := a.seeLocked(id)
	if first {
		if a.gossip.from == nil {
			a.gossip.from = make(map[uint64][]peer.ID)
		}
		a.gossip.from[id] = []peer.ID{from}
	} else if f, ok := a.gossip.from[id]; ok && !slices.Contains(f, from) {
		a.gossip.from[id] = append(f, from)
	}
	a.seenMu.Unlock()
	a.obs.Received(a.cfg.Node, id, from, hop, first)
	if !first {
		return
	}
	until := a.clk.Now().Add(v)
	validate := func() {
		valid := a.sleepUntil(until)
		a.seenMu.Lock()
		skip := a.gossip.from[id]
		delete(a.gossip.from, id)
		a.seenMu.Unlock()
		if valid {
			a.forward(id, hop, skip)
		}
	}
	if !a.goOwned(validate) {
		a.seenMu.Lock()
		delete(a.gossip.from, id)
		a.seenMu.Unlock()
	}
}

// forward sends message id, hop links from its origin, to Fanout
// distinct peers the manager's balancer picks among the linked peers but
// those in skip (which have it). Each pick is in flight (counted in the
// peer's load) until its receiver acknowledges, so the next pick of the
// same forward sees it.
func (a *Agent) forward(id uint64, hop int, skip []peer.ID) {
	g := a.w.Gossip
	cands := slices.DeleteFunc(a.m.Peers(), func(p peer.ID) bool { return slices.Contains(skip, p) })
	msg := appendGossipFrame(make([]byte, 0, gossipHeader+g.Size), id, hop, g.Size)
	prio := priority(g.Priority, mux.PriorityNormal)
	for range g.Fanout {
		if len(cands) == 0 {
			return
		}
		sel, err := a.m.SelectBest(a.ctx, cands)
		if err != nil {
			return // none eligible (links failing their checks, circuits open)
		}
		cands = slices.DeleteFunc(cands, func(p peer.ID) bool { return p == sel.Peer })
		a.sendGossip(id, sel, prio, msg)
	}
}

// out returns the outbound gossip stream to p, made on first use.
func (g *gossipState) out(p peer.ID) *gossipOut {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := g.outs[p]
	if o == nil {
		if g.outs == nil {
			g.outs = make(map[peer.ID]*gossipOut)
		}
		o = &gossipOut{p: p}
		g.outs[p] = o
	}
	return o
}

// forget removes o from the map if it holds nothing: no stream, no copy
// queued, no writer.
func (g *gossipState) forget(o *gossipOut) {
	g.mu.Lock()
	defer g.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.s != nil || len(o.queue) > 0 || o.writing || g.outs[o.p] != o {
		return
	}
	o.gone = true
	delete(g.outs, o.p)
}

// sendGossip queues msg, the frame of message id, for the selected peer;
// its writer sends it on the peer's gossip stream (opening it if need
// be) and leaves it pending until the peer acknowledges it. A copy that
// cannot be queued or written, or is not acknowledged within the agent's
// timeout, is reported to the selection and the Observer with its error.
func (a *Agent) sendGossip(id uint64, sel *peerlink.Selection, prio mux.Priority, msg []byte) {
	c := queuedCopy{gossipCopy: gossipCopy{id: id, sel: sel, start: a.clk.Now()}, msg: msg, prio: prio}
	o := a.gossip.out(sel.Peer)
	o.mu.Lock()
	for o.gone {
		o.mu.Unlock()
		o = a.gossip.out(sel.Peer)
		o.mu.Lock()
	}
	if len(o.queue) >= maxGossipQueue {
		o.mu.Unlock()
		a.gossipDone(c.gossipCopy, ErrGossipQueueFull)
		return
	}
	o.queue = append(o.queue, c)
	if !o.writing {
		o.writing = a.goOwned(func() { a.writeQueue(o) })
	}
	var closed []queuedCopy
	if !o.writing { // the agent is closing
		closed, o.queue = o.queue, nil
	}
	o.mu.Unlock()
	for _, c := range closed {
		a.gossipDone(c.gossipCopy, ErrClosed)
	}
}

// writeQueue writes o's queued copies in order until the queue is empty.
func (a *Agent) writeQueue(o *gossipOut) {
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			o.writing = false
			o.mu.Unlock()
			a.gossip.forget(o) // if no stream was opened
			return
		}
		c := o.queue[0]
		o.queue[0] = queuedCopy{}
		o.queue = o.queue[1:]
		o.mu.Unlock()
		a.writeCopy(o, c)
	}
}

// writeCopy writes one copy on o's stream, opening it if need be.
func (a *Agent) writeCopy(o *gossipOut, q queuedCopy) {
	c := q.gossipCopy
	deadline := c.start.Add(a.timeout())
	if a.ctx.Err() != nil {
		a.gossipDone(c, ErrClosed)
		return
	}
	if !a.clk.Now().Before(deadline) {
		// Queued behind a stalled stream for its whole timeout.
		a.gossipDone(c, context.DeadlineExceeded)
		return
	}
	o.mu.Lock()
	s := o.s
	o.mu.Unlock()
	if s != nil && s.Context().Err() != nil {
		// Its link has closed since the last copy, with nothing pending
		// to notice: this copy goes on the link there is now.
		a.failGossip(o, s, mux.ErrSessionClosed)
		s = nil
	}
	if s == nil {
		ctx, cancel := context.WithDeadline(peerlink.WithNoDial(a.ctx), deadline)
		var err error
		s, err = a.m.OpenStream(ctx, c.sel.Peer, GossipProtocol, q.prio)
		cancel()
		if err != nil {
			a.gossipDone(c, err)
			return
		}
		stopReset := context.AfterFunc(a.ctx, func() { _ = s.Reset() })
		stopWatch := context.AfterFunc(s.Context(), func() {
			// The link ended: its copies fail, and o goes unless
			// copies wait for the next link.
			a.failGossip(o, s, mux.ErrSessionClosed)
			a.gossip.forget(o)
		})
		o.mu.Lock()
		o.s, o.stop = s, func() { stopReset(); stopWatch() }
		o.mu.Unlock()
	}
	// Pending before it is written, so that its acknowledgement cannot
	// come first. This is o's only writer, so o.s is still s unless s
	// failed meanwhile (its reader saw an error), and then the copy
	// fails too.
	o.mu.Lock()
	if o.s != s {
		o.mu.Unlock()
		a.gossipDone(c, ErrGossipStreamFailed)
		return
	}
	o.pending = append(o.pending, c)
	o.mu.Unlock()
	// No write deadline: Write returns once the frame is queued on the
	// link, and a link that takes nothing fails the session after its
	// WriteTimeout; a deadline would make each Write start a goroutine.
	if _, err := s.Write(q.msg); err != nil {
		a.failGossip(o, s, err)
		return
	}
	o.mu.Lock()
	closed := false
	if o.s == s && !o.reading {
		o.reading = a.goOwned(func() { a.readAcks(o, s) })
		closed = !o.reading
	}
	o.mu.Unlock()
	if closed {
		a.failGossip(o, s, ErrClosed)
	}
}

// readAcks completes o's pending copies as their acknowledgements come
// on s, until none is pending or s fails; the oldest pending copy's
// timeout is the read deadline.
func (a *Agent) readAcks(o *gossipOut, s *mux.Stream) {
	var buf [64]byte
	var acked []gossipCopy
	for {
		o.mu.Lock()
		if o.s != s {
			o.mu.Unlock() // failed: its copies are reported
			return
		}
		if len(o.pending) == 0 {
			o.reading = false
			o.mu.Unlock()
			return
		}
		// Pending copies only grow while this reads: it never takes
		// more acknowledgements than copies it knows of.
		want := min(len(o.pending), len(buf))
		dl := o.pending[0].start.Add(a.timeout())
		o.mu.Unlock()
		if !a.clk.Now().Before(dl) {
			// Past its deadline already: no Read, for which yamux would
			// make a timer already due (a path that is hard on the race
			// runtime in synctest bubbles; see internal/raceflag).
			a.failGossip(o, s, os.ErrDeadlineExceeded)
			return
		}
		_ = s.SetReadDeadline(dl)

		n, err := s.Read(buf[:want])
		if k := slices.IndexFunc(buf[:n], func(b byte) bool { return b != gossipAck }); k >= 0 {
			n, err = k, fmt.Errorf("%w: acknowledgement byte %d, want %d", ErrGossipFrame, buf[k], gossipAck)
		}
		now := a.clk.Now()
		o.mu.Lock()
		if o.s != s {
			o.mu.Unlock()
			return
		}
		acked = append(acked[:0], o.pending[:n]...)
		o.pending = slices.Delete(o.pending, 0, n)
		o.mu.Unlock()
		for _, c := range acked {
			c.sel.Done(nil, now.Sub(c.start))
			a.obs.Sent(a.cfg.Node, c.id, o.p, nil)
		}
		if err != nil {
			a.failGossip(o, s, err)
			return
		}
	}
}

// failGossip resets o's stream s after err and reports every copy
// pending on it; the next copy opens a new stream. It does nothing if s
// has already failed. The reset is made without o.mu: it writes to the
// link.
func (a *Agent) failGossip(o *gossipOut, s *mux.Stream, err error) {
	o.mu.Lock()
	if o.s != s {
		o.mu.Unlock()
		return
	}
	stop, pending := o.stop, o.pending
	o.s, o.stop, o.pending, o.reading = nil, nil, nil, false
	o.mu.Unlock()
	stop()
	_ = s.Reset()
	for _, c := range pending {
		a.gossipDone(c, err)
	}
}

// gossipDone reports a copy that failed with err (to the Observer only
// while the agent runs: the copies its Close cuts short are not the
// network's failures).
func (a *Agent) gossipDone(c gossipCopy, err error) {
	c.sel.Done(err, a.clk.Now().Sub(c.start))
	if a.ctx.Err() == nil {
		a.obs.Sent(a.cfg.Node, c.id, c.sel.Peer, err)
	}
}

// serveGossip reads frames from a peer's gossip stream until it ends,
// acknowledging each before handling it. A malformed frame resets the
// stream.
func (a *Agent) serveGossip(s *mux.Stream) {
	stop := context.AfterFunc(a.ctx, func() { _ = s.Reset() })
	defer stop()
	var h [gossipHeader]byte
	ack := []byte{gossipAck}
	from := s.RemotePeer()
	for {
		id, hop, err := readGossipFrame(s, &h)
		if err != nil {
			if errors.Is(err, ErrGossipFrame) {
				_ = s.Reset()
			}
			return
		}
		if _, err := s.Write(ack); err != nil {
			return
		}
		a.received(id, hop+1, from)
	}
}
