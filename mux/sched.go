package mux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The write scheduler.
//
// yamux has no priorities: a stream's Write puts up to a whole send
// window on the wire as one frame, and frames leave in arrival order, so
// a consensus vote can wait behind megabytes of block sync. mux therefore
// cuts Writes into chunks, and a scheduler, one per session, decides
// whose chunk goes next:
//
//   - A Write is cut into chunks of at most Config.ChunkSize bytes on the
//     wire (one yamux data frame each), and each chunk needs a turn. At
//     most Config.MaxInFlightChunks turns are granted at once; a turn
//     ends when its chunk has been written to the link. So however busy
//     the link, at most MaxInFlightChunks chunks are ahead of a newly
//     arrived one of the highest priority.
//
//   - Turns go to the four priority classes by stride scheduling. Class c
//     has a pass; the busy class with the smallest pass is served next
//     (ties to the higher priority), and its pass then advances by the
//     chunk's bytes divided by its weight. Under saturation each class
//     gets weight/Σweights of the turns (8/15, 4/15, 2/15 and 1/15 with
//     the default weights) and none starves. A class that becomes busy
//     brings its pass up to the virtual time, the pass at which the last
//     granted chunk started (start-time fair queueing): it banks no credit
//     while idle, so it gets its share from then on, not a burst, yet it
//     is served next (busy classes are at or past the virtual time, and
//     it wins ties against lower priorities). Within a class, streams take
//     turns in arrival order (round robin).
//
//   - A stream whose send window is used up (its remote is not reading)
//     never holds a turn: it waits, parked, until the remote's window
//     update arrives, and then rejoins its class. A turn is cut to the
//     window, so a chunk never waits for window once granted.
//
//   - A writer that finds nobody waiting takes every free turn at once
//     and writes its chunks in one write to the link (see turn).
//
// mux writes the data frames of its streams itself, each from the
// writer's goroutine under the frame conn's write lock (Stream.sendChunks;
// a Write whose deadline comes before the link's WriteTimeout hands its
// frames to a goroutine of their own, see frameConn.writeDetached),
// rather than through yamux's Stream.Write. yamux hands every frame to its
// send goroutine and waits until it has been written: two goroutine
// hand-offs and a copy per frame, and one frame in flight per stream.
// With 16 KiB chunks that halved throughput on loopback TCP (raw yamux,
// 16 KiB writes against 64 KiB ones: 0.87 against 1.7 GB/s); written
// directly, 16 KiB frames lose nothing measurable. yamux still does
// everything else: opening, closing and resetting streams, receiving,
// the window updates this side sends, pings.
//
// Send windows. yamux's own send window counts only the frames yamux
// writes, and it writes no data frames for mux streams, so the scheduler
// keeps each stream's window itself, exactly as the remote's yamux counts
// it: 256 KiB when the stream opens (yamux's initialStreamWindow, fixed
// by its protocol), minus every data frame body mux writes for it, plus
// the delta of every window update the remote sends for it (with SYN,
// ACK or FIN flags or none; a RST's length field is peerlink's reason
// code, not a delta). The frame conn's read side reports each update as
// soon as its bytes are read from the link, which is no earlier than the
// remote granted it, so the window never overstates the remote's: a
// frame that passed it would make the remote's yamux end the session
// (receive window exceeded). It is ahead of yamux's own count by the
// updates still waiting in yamux's read buffer, which is harmless: those
// credits are real, and yamux's count is not used for mux streams.
//
// An update can arrive before its stream is registered (yamux's accepting
// side acknowledges an open with a window update that may carry a large
// delta, and the opener registers the stream only after yamux's
// OpenStream returns), so the window state (a flow) is created when the
// stream's SYN passes through the frame conn, in either direction, and
// the Stream adopts it.
//
// Back pressure. Every Write is admitted to the session's queue first
// (Config.MaxQueuedBytes, MaxQueuedWrites) and counts there until it
// returns; see admit. It counts one Write, and as bytes its charge: what
// its stream's window lets it send now (see chargeLocked), so that only
// Writes the link itself holds up fill the queue, never one whose remote
// has stopped reading its stream.
//
// Locks. sc.mu is held only briefly and never while waiting or doing
// I/O; it may be taken while holding the frame conn's write lock or the
// session's mu, never the other way round.
type scheduler struct {
	mu sync.Mutex

	chunk       int // largest data frame body per turn: ChunkSize - frameHeaderLen
	maxInflight int
	inflight    int // turns granted and not ended
	weights     [NumPriorities]uint64
	pass        [NumPriorities]uint64   // each class's virtual finish time
	vtime       uint64                  // start pass of the last chunk granted
	ready       [NumPriorities]flowList // flows waiting for a turn, window open
	parked      flowList                // flows waiting for window
	flows       map[uint32]*flow        // by stream ID, from SYN until released
	closed      bool

	// Back pressure.
	maxBytes  int64
	maxWrites int
	failFast  bool
	qBytes    int64
	qWrites   int
	// Mirrors of qWrites and qBytes for lock-free readers
	// (Session.Figures), stored wherever those change.
	pubWrites, pubBytes atomic.Int64
	totals              *Totals                      // the node's (nil: none), told of every change
	fillStep            int                          // the queue's step in totals.fill as last told
	rooms               [NumPriorities][]*roomWaiter // Writes waiting for room, FIFO per priority

	cls [NumPriorities]classStats

	// handed counts bytes granted to turns (frame bodies, header prefix
	// included) minus those given back unused; the frame conn's dataOut
	// counts those written. Tests compare them.
	handed atomic.Uint64
}

type classStats struct {
	depth     int   // Writes admitted at this priority, not yet returned
	bytes     int64 // their charge
	served    uint64
	waits     uint64
	waitTotal time.Duration
	waitMax   time.Duration
	refusals  uint64
}

// QueueStats describes one priority class of a session's write queue.
type QueueStats struct {
	// Depth is the number of Writes in the queue now: admitted and not
	// yet returned (waiting for a turn, for the remote's window, or
	// sending a chunk).
	Depth int
	// QueuedBytes is what those Writes count against MaxQueuedBytes: of
	// the bytes each has still to send, those its stream's send window
	// lets it send now, at most the bound (see Config.MaxQueuedBytes). A
	// Write waiting for its remote to return window counts none.
	QueuedBytes int64
	// Served is the number of chunks sent.
	Served uint64
	// Waits is the number of turns that were not granted at once, and
	// WaitTotal and WaitMax the total and longest time they waited (for
	// the turn, and for window if the remote was not reading).
	Waits     uint64
	WaitTotal time.Duration
	WaitMax   time.Duration
	// Refusals counts Writes failed with ErrBackpressure.
	Refusals uint64
}

// passScale is how far a class at weight 1 advances for a full chunk.
const passScale = 1 << 20

// passRebase: when passes grow past it they are all shifted down, long
// before they could overflow.
const passRebase = 1 << 62

func newScheduler(cfg Config) *scheduler {
	sc := &scheduler{
		chunk:       cfg.ChunkSize - frameHeaderLen,
		maxInflight: cfg.MaxInFlightChunks,
		flows:       make(map[uint32]*flow),
		maxBytes:    int64(cfg.MaxQueuedBytes),
		maxWrites:   cfg.MaxQueuedWrites,
		failFast:    cfg.FailFast,
		totals:      cfg.Totals,
	}
	for i, w := range cfg.PriorityWeights {
		sc.weights[i] = uint64(w)
	}
	return sc
}

type flowState uint8

const (
	flowIdle    flowState = iota // no writer waiting, or the writer holds a turn
	flowReady                    // in ready[prio]: waiting for a turn
	flowParked                   // in parked: waiting for window
	flowGranted                  // granted a turn the writer has not yet taken
)

// flow is one stream's scheduling state. Fields are guarded by
// scheduler.mu. A stream has one writer in the scheduler at a time (its
// Writes are serialised), so one set of wait fields suffices.
type flow struct {
	id      uint32
	window  int64 // send credit left; see the scheduler's comment
	prio    Priority
	state   flowState
	adopted bool // a Stream owns it

	next, prev *flow
	want, need int // bytes wanted for the next chunk; window needed to be eligible
	grant      int // bytes granted (flowGranted)
	since      time.Time
	wake       chan struct{} // cap 1; made at the first wait
	timer      *time.Timer   // write deadline; made at the first wait with one

	qWrites int   // this stream's Writes in the queue: 0 or 1
	qBytes  int64 // and their charge
	held    int64 // bytes of the turns granted to it and not yet ended

	// w is the state of the stream's Write in the scheduler, used by the
	// Write that holds the stream's write lock (so there is one at a
	// time, and none allocates it); queued: it is in the queue.
	w      writeOp
	queued bool
}

func newFlow(id uint32) *flow {
	return &flow{id: id, window: int64(DefaultStreamWindow)}
}

// flowList is an intrusive FIFO of flows.
type flowList struct{ head, tail *flow }

func (l *flowList) empty() bool { return l.head == nil }

func (l *flowList) push(f *flow) {
	f.next, f.prev = nil, l.tail
	if l.tail == nil {
		l.head = f
	} else {
		l.tail.next = f
	}
	l.tail = f
}

func (l *flowList) remove(f *flow) {
	if f.prev == nil {
		l.head = f.next
	} else {
		f.prev.next = f.next
	}
	if f.next == nil {
		l.tail = f.prev
	} else {
		f.next.prev = f.prev
	}
	f.next, f.prev = nil, nil
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Frame hooks.

// sent is the frame conn's hook for frames yamux writes with SYN or RST.
// A SYN opens a flow (before the frame leaves, so before any answer); a
// RST for a stream no Stream has adopted (yamux refusing an open past its
// backlog, or mux refusing one past MaxStreams) drops it.
func (sc *scheduler) sent(id uint32, flags uint16) {
	sc.mu.Lock()
	if flags&flagSYN != 0 && sc.flows[id] == nil {
		sc.flows[id] = newFlow(id)
	}
	if flags&flagRST != 0 {
		sc.dropUnadoptedLocked(id)
	}
	sc.mu.Unlock()
}

// credit is the frame tracker's hook for every window update read from
// the link except RSTs, and for data frames that carry SYN (delta 0): an
// inbound SYN opens a flow; a delta grows the window.
func (sc *scheduler) credit(id uint32, flags uint16, delta uint32) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	fl := sc.flows[id]
	if fl == nil {
		if flags&flagSYN == 0 {
			return // a stream already released, or never opened
		}
		fl = newFlow(id)
		sc.flows[id] = fl
	}
	if delta == 0 {
		return
	}
	fl.window += int64(delta)
	if fl.queued {
		sc.rechargeLocked(fl, &fl.w) // a stalled Write's charge grows back
	}
	if fl.state == flowParked && fl.window >= int64(fl.need) {
		sc.parked.remove(fl)
		sc.readyLocked(fl)
		sc.dispatchLocked()
	}
}

// drop drops the flow of a stream that will not be registered: the
// remote reset it first, or its opener gave up.
func (sc *scheduler) drop(id uint32) {
	sc.mu.Lock()
	sc.dropUnadoptedLocked(id)
	sc.mu.Unlock()
}

func (sc *scheduler) dropUnadoptedLocked(id uint32) {
	if fl := sc.flows[id]; fl != nil && !fl.adopted {
		delete(sc.flows, id)
	}
}

// adopt returns stream id's flow for its Stream, creating it if the SYN
// was not seen (only if the frame conn lost track of the frames, when the
// session is failing anyway).
func (sc *scheduler) adopt(id uint32, prio Priority) *flow {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	fl := sc.flows[id]
	if fl == nil || fl.adopted {
		fl = newFlow(id)
		sc.flows[id] = fl
	}
	fl.adopted = true
	fl.prio = prio
	return fl
}

// forget drops a released stream's flow: it will send no more.
func (sc *scheduler) forget(fl *flow) {
	sc.mu.Lock()
	if sc.flows[fl.id] == fl {
		delete(sc.flows, fl.id)
	}
	sc.mu.Unlock()
}

// debit takes n bytes of window for a frame sent without a turn (a stream
// header sent alone: at most 131 bytes, on a stream's fresh window).
func (sc *scheduler) debit(fl *flow, n int) {
	sc.mu.Lock()
	fl.window -= int64(n)
	sc.handed.Add(uint64(n))
	if fl.queued {
		sc.rechargeLocked(fl, &fl.w)
	}
	sc.mu.Unlock()
}

// Priorities.

func (sc *scheduler) setPriority(st *Stream, p Priority) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	st.prio.Store(uint32(p))
	fl := st.fl
	old := fl.prio
	if old == p {
		return
	}
	fl.prio = p
	// The queue's accounting follows the stream.
	sc.cls[old].depth -= fl.qWrites
	sc.cls[old].bytes -= fl.qBytes
	sc.cls[p].depth += fl.qWrites
	sc.cls[p].bytes += fl.qBytes
	if fl.state == flowReady {
		sc.ready[old].remove(fl)
		sc.readyLocked(fl)
	}
	for i := 0; i < len(sc.rooms[old]); {
		if rw := sc.rooms[old][i]; rw.fl == fl {
			sc.rooms[old] = append(sc.rooms[old][:i], sc.rooms[old][i+1:]...)
			rw.prio = p
			sc.rooms[p] = append(sc.rooms[p], rw)
			continue
		}
		i++
	}
	sc.dispatchLocked()
	sc.admitWaitersLocked()
}

// Turns.

// readyLocked queues fl for a turn in its class, bringing the class to
// the virtual time if it was not busy.
func (sc *scheduler) readyLocked(fl *flow) {
	c := fl.prio
	if sc.ready[c].empty() {
		sc.activateLocked(c)
	}
	sc.ready[c].push(fl)
	fl.state = flowReady
}

// activateLocked brings class c, becoming busy, level with the virtual
// time: the pass at which the most recently granted chunk started. Busy
// classes have advanced at least that far, so c neither banks credit for
// the time it was idle nor has to catch up with them.
func (sc *scheduler) activateLocked(c Priority) {
	if sc.pass[c] < sc.vtime {
		sc.pass[c] = sc.vtime
	}
}

// pickLocked returns the busy class with the smallest pass, the higher
// priority on a tie, or -1.
func (sc *scheduler) pickLocked() int {
	best := -1
	for c := NumPriorities - 1; c >= 0; c-- {
		if !sc.ready[c].empty() && (best < 0 || sc.pass[c] < sc.pass[best]) {
			best = c
		}
	}
	return best
}

// takeLocked grants fl up to n turns, one chunk each, for up to want
// bytes in all, cut to its window. It returns the bytes and the turns.
func (sc *scheduler) takeLocked(fl *flow, want, n int) (int, int) {
	k := int(min(int64(want), int64(n)*int64(sc.chunk), fl.window))
	n = (k + sc.chunk - 1) / sc.chunk
	fl.window -= int64(k)
	fl.held += int64(k) // the charge (held + window) is unchanged
	c := fl.prio
	sc.vtime = sc.pass[c]
	inc := uint64(k) * passScale / (uint64(sc.chunk) * sc.weights[c])
	sc.pass[c] += max(inc, 1)
	if sc.pass[c] > passRebase {
		// Shift everything down. A class behind the virtual time would be
		// brought level with it when next busy anyway.
		for o := range sc.pass {
			sc.pass[o] = max(sc.pass[o], sc.vtime) - sc.vtime
		}
		sc.vtime = 0
	}
	sc.inflight += n
	sc.cls[c].served += uint64(n)
	sc.handed.Add(uint64(k))
	return k, n
}

// dispatchLocked grants free turns to waiting flows, by pass.
func (sc *scheduler) dispatchLocked() {
	for sc.inflight < sc.maxInflight {
		c := sc.pickLocked()
		if c < 0 {
			return
		}
		fl := sc.ready[c].head
		sc.ready[c].remove(fl)
		fl.grant, _ = sc.takeLocked(fl, fl.want, 1)
		fl.state = flowGranted
		notify(fl.wake)
	}
}

// errSchedClosed: the session ended.
var errSchedClosed = errors.New("mux: scheduler closed")

// errStreamDone: the stream was closed or reset; Stream.writeErr says how.
var errStreamDone = errors.New("mux: stream done")

// writeOp is one Write's state in the scheduler: its stream's flow.w.
type writeOp struct {
	ctx    context.Context // nil for Write
	charge int64           // what the Write counts against MaxQueuedBytes now
	left   int64           // payload bytes not yet sent

	// The turns held: k bytes in n chunks; the writer sets used (frame
	// body bytes sent, header included) and payload (of them, the
	// Write's) before ending them.
	k, n, used, payload int
}

// turn ends the turns the writer holds, if any, and gets it new ones for
// up to want bytes, for which its window must hold at least need; it
// returns the bytes granted, also in w.k. The two are one step so that
// the writer competes for the turn it frees like everyone else, and so
// that a lone writer on an idle link takes one lock per link write.
//
// A writer that finds nobody waiting takes every free turn at once (up
// to MaxInFlightChunks chunks, one frame each) and writes its frames in
// one write to the link: the chunks committed ahead of a newcomer are no
// more than if as many writers held a turn each, and one stream keeps
// the link as busy as several would. A writer that has to wait is
// granted one turn at a time.
func (sc *scheduler) turn(st *Stream, w *writeOp, want, need int) (int, error) {
	fl := st.fl
	sc.mu.Lock()
	if w.n > 0 {
		sc.endTurnLocked(fl, w)
	}
	if err := sc.abortLocked(st, w); err != nil {
		sc.dispatchLocked()
		sc.mu.Unlock()
		return 0, err
	}
	if fl.wake == nil {
		fl.wake = make(chan struct{}, 1) // once per stream
	}
	fl.want, fl.need = want, need
	if fl.window < int64(need) {
		fl.since = time.Now()
		sc.parked.push(fl)
		fl.state = flowParked
		sc.dispatchLocked()
		sc.mu.Unlock()
		return sc.wait(st, w)
	}
	if sc.inflight < sc.maxInflight && sc.pickLocked() < 0 {
		// Nobody is waiting: the free turns are ours at once.
		sc.activateLocked(fl.prio)
		w.k, w.n = sc.takeLocked(fl, want, sc.maxInflight-sc.inflight)
		sc.mu.Unlock()
		return w.k, nil
	}
	// Compete with the waiting flows (for the turn just freed, if any).
	sc.readyLocked(fl)
	sc.dispatchLocked()
	if fl.state == flowGranted {
		fl.state = flowIdle
		w.k, w.n = fl.grant, 1
		sc.mu.Unlock()
		return w.k, nil
	}
	fl.since = time.Now()
	sc.mu.Unlock()
	return sc.wait(st, w)
}

// done ends the writer's last turns, if it holds any, and the Write:
// whatever it still counts against the queue is released.
func (sc *scheduler) done(st *Stream, w *writeOp) {
	fl := st.fl
	sc.mu.Lock()
	if w.n > 0 {
		sc.endTurnLocked(fl, w)
	}
	sc.releaseRoomLocked(fl, w.charge)
	w.charge = 0
	w.ctx = nil
	fl.queued = false
	fl.qWrites--
	sc.cls[fl.prio].depth--
	sc.qWrites--
	sc.publishQueue()
	sc.dispatchLocked()
	sc.admitWaitersLocked()
	sc.mu.Unlock()
}

func (sc *scheduler) endTurnLocked(fl *flow, w *writeOp) {
	sc.inflight -= w.n
	if unused := w.k - w.used; unused > 0 {
		fl.window += int64(unused)
		sc.handed.Add(^uint64(unused - 1))
	}
	fl.held = 0
	w.left -= int64(w.payload)
	w.k, w.n, w.used, w.payload = 0, 0, 0, 0
	sc.rechargeLocked(fl, w)
}

// chargeLocked is what w, fl's Write in the queue, counts against
// MaxQueuedBytes: the bytes it could send now, had it every turn it
// wants. That is its unsent bytes, cut to its stream's send window plus
// the turns it holds (their bytes are debited from the window but not yet
// on the link), and to MaxQueuedBytes. A Write waiting for window counts
// the little window it has (less than the chunk it waits to send: in
// practice nothing), and no more until the remote returns window.
func (sc *scheduler) chargeLocked(fl *flow, w *writeOp) int64 {
	return max(0, min(w.left, fl.held+max(0, fl.window), sc.maxBytes))
}

// rechargeLocked brings w's charge to chargeLocked, after its window or
// its unsent bytes changed. A charge that grows is not checked against
// the bounds (the Write is in already); one that shrinks makes room.
func (sc *scheduler) rechargeLocked(fl *flow, w *writeOp) {
	c := sc.chargeLocked(fl, w)
	d := c - w.charge
	if d == 0 {
		return
	}
	w.charge = c
	sc.qBytes += d
	sc.publishQueue()
	fl.qBytes += d
	sc.cls[fl.prio].bytes += d
	if d < 0 {
		sc.admitWaitersLocked()
	}
}

// endTurns ends n turns whose writer left them to a detached write (see
// Stream.awaitDetached), now that their frames are written.
func (sc *scheduler) endTurns(n int) {
	sc.mu.Lock()
	sc.inflight -= n
	sc.dispatchLocked()
	sc.mu.Unlock()
}

// abortLocked says why a writer must stop waiting, if it must.
func (sc *scheduler) abortLocked(st *Stream, w *writeOp) error {
	switch {
	case sc.closed:
		return errSchedClosed
	case st.localReset.Load() || st.remoteReset.Load() || st.closed.Load():
		return errStreamDone
	case w.ctx != nil && w.ctx.Err() != nil:
		return w.ctx.Err()
	}
	if dl := st.writeDeadline(); !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait waits for the turn fl asked for, or for a reason to give up: the
// write deadline or w's context, the stream's Close or Reset, or the
// session's end. Whoever causes one of those sends on fl.wake.
func (sc *scheduler) wait(st *Stream, w *writeOp) (int, error) {
	fl := st.fl
	var done <-chan struct{}
	if w.ctx != nil {
		done = w.ctx.Done()
	}
	armed := false
	for {
		sc.mu.Lock()
		if fl.state == flowGranted {
			fl.state = flowIdle
			sc.noteWaitLocked(fl)
			w.k, w.n = fl.grant, 1
			sc.mu.Unlock()
			if armed {
				fl.timer.Stop()
			}
			return w.k, nil
		}
		if err := sc.abortLocked(st, w); err != nil {
			if fl.state == flowReady {
				sc.ready[fl.prio].remove(fl)
			} else if fl.state == flowParked {
				sc.parked.remove(fl)
			}
			fl.state = flowIdle
			sc.mu.Unlock()
			if armed {
				fl.timer.Stop()
			}
			return 0, err
		}
		var timeout <-chan time.Time
		if dl := st.writeDeadline(); !dl.IsZero() {
			if fl.timer == nil {
				fl.timer = time.NewTimer(time.Until(dl))
			} else {
				fl.timer.Reset(time.Until(dl))
			}
			armed = true
			timeout = fl.timer.C
		} else if armed {
			fl.timer.Stop()
			armed = false
		}
		sc.mu.Unlock()
		select {
		case <-fl.wake:
		case <-done:
		case <-timeout:
		}
	}
}

func (sc *scheduler) noteWaitLocked(fl *flow) {
	d := time.Since(fl.since)
	c := &sc.cls[fl.prio]
	c.waits++
	c.waitTotal += d
	c.waitMax = max(c.waitMax, d)
}

// kick wakes st's writers so that they look again at the stream's state
// and write deadline (after Close, Reset, a remote reset or a new
// deadline).
func (sc *scheduler) kick(st *Stream) {
	fl := st.fl
	if fl == nil {
		return
	}
	sc.mu.Lock()
	if fl.wake != nil {
		notify(fl.wake)
	}
	for _, q := range sc.rooms {
		for _, rw := range q {
			if rw.fl == fl {
				notify(rw.ch)
			}
		}
	}
	sc.mu.Unlock()
}

// shutdown wakes every waiting writer: the session has ended.
func (sc *scheduler) shutdown() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.closed = true
	for c := range sc.ready {
		for fl := sc.ready[c].head; fl != nil; fl = fl.next {
			notify(fl.wake)
		}
	}
	for fl := sc.parked.head; fl != nil; fl = fl.next {
		if fl.wake != nil {
			notify(fl.wake)
		}
	}
	for _, q := range sc.rooms {
		for _, rw := range q {
			notify(rw.ch)
		}
	}
}

// Back pressure.

// roomWaiter is a Write waiting to be admitted to the queue.
type roomWaiter struct {
	fl       *flow
	w        *writeOp
	prio     Priority
	ch       chan struct{} // cap 1: admitted, or look again
	admitted bool
}

// Low and normal Writes may fill the queue only up to 1-1/queueReserveDiv
// of each bound; the rest is kept for high and critical ones, so a
// backlog of bulk writes never delays a vote's admission.
const queueReserveDiv = 4

func (sc *scheduler) byteLimit(p Priority) int64 {
	if p >= PriorityHigh {
		return sc.maxBytes
	}
	return max(1, sc.maxBytes-sc.maxBytes/queueReserveDiv)
}

func (sc *scheduler) writeLimit(p Priority) int {
	if p >= PriorityHigh {
		return sc.maxWrites
	}
	return max(1, sc.maxWrites-sc.maxWrites/queueReserveDiv)
}

// hasRoomLocked: the queue is below priority p's bounds. A Write is
// admitted while it is, whatever its own charge, so the bytes queued can
// pass the bound by the charge of the last Write admitted (and by the
// growth of the charges of those admitted, as their windows come back).
// Requiring room for a Write's whole charge instead would let the bulk
// Writes that fill the queue of a slow link keep out, for as long as the
// link is slow, any high-priority Write larger than the room kept for it
// (a block, say).
func (sc *scheduler) hasRoomLocked(p Priority) bool {
	return sc.qWrites < sc.writeLimit(p) && sc.qBytes < sc.byteLimit(p)
}

// admit enters a Write of n bytes into st's session queue; the caller
// holds st's write lock, so the stream has no other Write in it. If the
// queue is at its bounds for the Write's priority (see hasRoomLocked), it
// fails at once with ErrBackpressure (FailFast) or waits, bounded by the
// write deadline, w's context, the stream's Close or Reset and the
// session's end. A Write counts until it returns: one Write, and its
// charge in bytes (see chargeLocked). Waiting Writes are admitted highest
// priority first, in arrival order within a priority.
func (sc *scheduler) admit(st *Stream, w *writeOp, n int) error {
	fl := st.fl
	sc.mu.Lock()
	if err := sc.abortLocked(st, w); err != nil {
		sc.mu.Unlock()
		return err
	}
	p := fl.prio
	w.charge, w.left = 0, int64(n)
	if sc.hasRoomLocked(p) && sc.noRoomWaitersLocked(p) {
		sc.enterLocked(fl, w)
		sc.mu.Unlock()
		return nil
	}
	if sc.failFast {
		sc.cls[p].refusals++
		depth, queued := sc.qWrites, sc.qBytes
		sc.mu.Unlock()
		return fmt.Errorf("%w: %d writes, %d bytes queued (MaxQueuedWrites %d, MaxQueuedBytes %d)",
			ErrBackpressure, depth, queued, sc.maxWrites, sc.maxBytes)
	}
	rw := &roomWaiter{fl: fl, w: w, prio: p, ch: make(chan struct{}, 1)}
	sc.rooms[p] = append(sc.rooms[p], rw)
	sc.mu.Unlock()

	var done <-chan struct{}
	if w.ctx != nil {
		done = w.ctx.Done()
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		sc.mu.Lock()
		if rw.admitted {
			sc.mu.Unlock()
			return nil
		}
		if err := sc.abortLocked(st, w); err != nil {
			q := sc.rooms[rw.prio]
			for i, o := range q {
				if o == rw {
					sc.rooms[rw.prio] = append(q[:i], q[i+1:]...)
					break
				}
			}
			sc.admitWaitersLocked()
			sc.mu.Unlock()
			return err
		}
		var timeout <-chan time.Time
		if dl := st.writeDeadline(); !dl.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(dl))
			} else {
				timer.Reset(time.Until(dl))
			}
			timeout = timer.C
		}
		sc.mu.Unlock()
		select {
		case <-rw.ch:
		case <-done:
		case <-timeout:
		}
	}
}

func (sc *scheduler) noRoomWaitersLocked(p Priority) bool {
	for q := p; q < NumPriorities; q++ {
		if len(sc.rooms[q]) > 0 {
			return false
		}
	}
	return true
}

// enterLocked counts w, fl's Write, into the queue with its charge.
func (sc *scheduler) enterLocked(fl *flow, w *writeOp) {
	w.charge = sc.chargeLocked(fl, w)
	fl.queued = true
	sc.qWrites++
	sc.qBytes += w.charge
	sc.publishQueue()
	fl.qWrites++
	fl.qBytes += w.charge
	c := &sc.cls[fl.prio]
	c.depth++
	c.bytes += w.charge
}

func (sc *scheduler) releaseRoomLocked(fl *flow, n int64) {
	sc.qBytes -= n
	sc.publishQueue()
	fl.qBytes -= n
	sc.cls[fl.prio].bytes -= n
}

// admitWaitersLocked admits waiting Writes while there is room, highest
// priority first, in arrival order within a priority.
func (sc *scheduler) admitWaitersLocked() {
	for p := PriorityCritical; ; p-- {
		for len(sc.rooms[p]) > 0 {
			rw := sc.rooms[p][0]
			if !sc.hasRoomLocked(p) {
				return
			}
			sc.rooms[p][0] = nil
			sc.rooms[p] = sc.rooms[p][1:]
			rw.admitted = true
			sc.enterLocked(rw.fl, rw.w)
			notify(rw.ch)
		}
		if p == PriorityLow {
			return
		}
	}
}

// stats returns the queue figures by priority.
func (sc *scheduler) stats() [NumPriorities]QueueStats {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var qs [NumPriorities]QueueStats
	for i, c := range sc.cls {
		qs[i] = QueueStats{
			Depth:       c.depth,
			QueuedBytes: c.bytes,
			Served:      c.served,
			Waits:       c.waits,
			WaitTotal:   c.waitTotal,
			WaitMax:     c.waitMax,
			Refusals:    c.refusals,
		}
	}
	return qs
}

func (sc *scheduler) utilization() float64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return float64(sc.qBytes) / float64(sc.maxBytes)
}

// publishQueue stores the queue's totals for lock-free readers. sc.mu
// must be held.
func (sc *scheduler) publishQueue() {
	writes := int64(sc.qWrites) - sc.pubWrites.Swap(int64(sc.qWrites))
	bytes := sc.qBytes - sc.pubBytes.Swap(sc.qBytes)
	step := fillStep(sc.qBytes, sc.maxBytes)
	sc.totals.addQueue(writes, bytes, sc.fillStep, step)
	sc.fillStep = step
}
