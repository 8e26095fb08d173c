package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/peerlink/peerlink/peer"
)

// Stream is one stream of a Session; it implements net.Conn. Use one
// reader goroutine at a time (yamux is not safe with concurrent Reads on
// one stream). Concurrent Writes are safe and do not interleave: each
// goes out whole before the next starts, as in yamux.
//
// Writes go through the session's write scheduler (see Config): a Write
// is cut into chunks that take turns on the link with the other streams'
// by priority, waits while the remote's window for the stream is used up,
// and is first admitted to the session's bounded write queue. The write
// deadline and WriteContext's context bound all of that waiting, and the
// wait for the link too (see Config.WriteTimeout).
//
// Close is a half close, as in yamux: it ends this side's writes (the
// remote reads EOF) and frees the stream slot, while Read keeps returning
// what the remote sends until the remote closes too. Reset aborts both
// directions.
type Stream struct {
	sess     *Session
	ys       *yamux.Stream
	fl       *flow // scheduler state: send window, turns
	id       uint32
	inbound  bool
	protocol string        // for an inbound stream, set once its header is read
	prio     atomic.Uint32 // a Priority; changed by SetPriority under the scheduler's lock

	// Opener only: the stream header (never modified), and whether it has
	// gone (always true for an inbound stream). It goes with the first
	// chunk, or alone, under the frame conn's write lock, which also
	// orders the setting of hdrDone.
	hdrDone atomic.Bool
	hdr     []byte

	// wlock serialises Writes (a channel, so that waiting for it can be
	// bounded by a deadline or context, and is a durable block).
	wlock chan struct{}

	wdl atomic.Int64 // write deadline, Unix nanoseconds; 0: none

	// Set by the session's frame tracker before yamux acts on the frame.
	rstCode     atomic.Uint32
	remoteReset atomic.Bool
	finSeen     atomic.Bool

	localReset atomic.Bool
	closed     atomic.Bool // Close or Reset called

	// Guarded by sess.mu.
	released   bool
	releasedAt time.Time
	prioKnown  bool // outbound, or inbound with its header read
	// slotHeld: an outbound stream closed here keeps its slot until the
	// remote's FIN or RST says the remote has freed its own (see
	// Session.release); slotTimer gives it back if neither comes.
	slotHeld  bool
	slotTimer *time.Timer
	freed     bool  // the slot has gone back
	nodeSlot  bool  // inbound: holds a NodeLimits.Inbound slot (outbound streams always hold theirs)
	mem       int64 // charged to NodeLimits' memory budget
}

func newStream(s *Session, ys *yamux.Stream, inbound bool, prio Priority) *Stream {
	st := &Stream{sess: s, ys: ys, id: ys.StreamID(), inbound: inbound, wlock: make(chan struct{}, 1)}
	st.prio.Store(uint32(prio))
	st.fl = s.sched.adopt(st.id, prio)
	return st
}

// Protocol returns the stream's protocol.
func (st *Stream) Protocol() string { return st.protocol }

// Priority returns the stream's priority: the one it was opened with (for
// an inbound stream, the one in its header) until SetPriority changes it.
func (st *Stream) Priority() Priority { return Priority(st.prio.Load()) }

// SetPriority changes the priority this side's writes are scheduled at,
// from the next chunk on (a Write in progress continues at the new
// priority). It returns an error wrapping ErrInvalidPriority for a value
// outside low..critical. The remote is not told: it saw the opening
// priority in the stream header, and its Priority still reports that one.
func (st *Stream) SetPriority(p Priority) error {
	if !p.Valid() {
		return fmt.Errorf("%w: %d (want 0..3)", ErrInvalidPriority, uint8(p))
	}
	s := st.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	old := st.Priority()
	s.sched.setPriority(st, p)
	if st.prioKnown && !st.released && old != p {
		s.addPriorityLocked(st.inbound, old, -1)
		s.addPriorityLocked(st.inbound, p, 1)
	}
	return nil
}

// LocalPeer returns this side's peer ID.
func (st *Stream) LocalPeer() peer.ID { return st.sess.local }

// RemotePeer returns the remote's peer ID.
func (st *Stream) RemotePeer() peer.ID { return st.sess.remote }

// ID returns the yamux stream ID (odd when the dialer opened the stream).
func (st *Stream) ID() uint32 { return st.id }

// Inbound reports whether the remote opened the stream.
func (st *Stream) Inbound() bool { return st.inbound }

// Session returns the session the stream belongs to.
func (st *Stream) Session() *Session { return st.sess }

// Context returns a context that is cancelled when the session ends or
// StartClose or Close is called; context.Cause then returns an error
// wrapping ErrSessionClosed. A handler watches it to stop work other than
// the stream's own I/O, which the session's end interrupts anyway. All
// the session's streams share it: closing or resetting the stream alone
// does not cancel it.
func (st *Stream) Context() context.Context { return st.sess.ctx }

// LocalAddr returns the link's local address.
func (st *Stream) LocalAddr() net.Addr { return st.sess.fc.LocalAddr() }

// RemoteAddr returns the link's remote address.
func (st *Stream) RemoteAddr() net.Addr { return st.sess.fc.RemoteAddr() }

// Read reads from the stream. On an outbound stream, the header is sent
// first if no Write has sent it. After a reset it returns a *ResetError;
// once the session has ended, an error wrapping ErrSessionClosed (unless
// the remote had closed the stream cleanly: then io.EOF); past a read
// deadline, os.ErrDeadlineExceeded.
func (st *Stream) Read(b []byte) (int, error) {
	if st.localReset.Load() {
		return 0, st.resetErr()
	}
	if !st.hdrDone.Load() {
		if err := st.sendHeader(); err != nil {
			return 0, err
		}
	}
	n, err := st.ys.Read(b)
	if err != nil {
		err = st.mapErr(err)
	}
	return n, err
}

// Write writes b to the stream and returns once all of it has been
// written to the link, or with the number of bytes written before an
// error. The first Write of an outbound stream carries the stream header
// in its first frame. It waits for the stream's earlier Writes, then for
// room in the session's write queue, for its turns, for the remote's
// window and for the link. Past the write deadline it fails with
// os.ErrDeadlineExceeded (a net.Error whose Timeout is true) instead of
// waiting or starting another frame, and the session goes on. Frames on
// their way to the link when the deadline passes are counted in n: they
// are committed, and go on without the Write (bounded by the link's
// Config.WriteTimeout, which ends the session if the link takes nothing
// for that long). With Config.FailFast a full queue fails it at once
// with an error wrapping ErrBackpressure. After a reset it returns a
// *ResetError; after Close, yamux's ErrStreamClosed; once the session
// has ended, an error wrapping ErrSessionClosed (and ErrWriteTimeout if
// a write to the link timed out).
func (st *Stream) Write(b []byte) (int, error) {
	return st.write(context.Background(), b) // its Done is nil: no extra wait
}

// WriteContext is Write with its waits bounded by ctx as well as by the
// write deadline. When ctx ends first it returns an error wrapping
// ctx.Err() (for a deadline, also os.ErrDeadlineExceeded) and the number
// of bytes already written; an already ended ctx writes nothing. ctx's
// deadline also bounds the wait for the link, as the write deadline does
// (see Write). Its cancellation alone does not, unless a deadline made
// the frames go from a goroutine of their own: frames being written when
// ctx is cancelled are finished first.
func (st *Stream) WriteContext(ctx context.Context, b []byte) (int, error) {
	if ctx.Err() != nil {
		return 0, contextErr("mux: write", ctx)
	}
	return st.write(ctx, b)
}

func (st *Stream) write(ctx context.Context, b []byte) (n int, err error) {
	if err := st.writeErr(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		if !st.hdrDone.Load() {
			return 0, st.sendHeader()
		}
		return 0, nil
	}
	sc := st.sess.sched
	// The stream's lock first: a Write waiting for an earlier one of its
	// stream (which may be waiting for the remote's window) holds no
	// place in the session's queue.
	if err := st.lockWrites(ctx); err != nil {
		return 0, st.waitErr(err, ctx)
	}
	w := &st.fl.w // this Write's, while it holds the stream's lock
	*w = writeOp{ctx: ctx}
	if err := sc.admit(st, w, len(b)); err != nil {
		w.ctx = nil
		<-st.wlock
		return 0, st.waitErr(err, ctx)
	}
	for n < len(b) {
		want, need := len(b)-n, 1
		if !st.hdrDone.Load() {
			// The header travels in the first chunk, whole.
			want += len(st.hdr)
			need += len(st.hdr)
		}
		var k int
		k, err = sc.turn(st, w, want, need)
		if err != nil {
			err = st.waitErr(err, ctx)
			break
		}
		w.used, w.payload, err = st.sendChunks(ctx, w, b[n:], k)
		n += w.payload
		if err != nil {
			break
		}
	}
	sc.done(st, w)
	<-st.wlock
	return n, err
}

// lockWrites takes the stream's write lock (another Write of the stream
// holds it), waiting no longer than the write deadline and ctx allow.
func (st *Stream) lockWrites(ctx context.Context) error {
	select {
	case st.wlock <- struct{}{}:
		return nil
	default:
	}
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	var timeout <-chan time.Time
	if dl := st.writeDeadline(); !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	// Close, Reset and the session's end need not wake this wait: the
	// Write holding the lock returns on them, and this one then finds the
	// stream's state in admit.
	select {
	case st.wlock <- struct{}{}:
		return nil
	case <-done:
		return ctx.Err()
	case <-timeout:
		return os.ErrDeadlineExceeded
	}
}

// sendChunks writes the turns' k bytes as data frames of at most one
// chunk each: the stream header if it has not gone, then the start of p.
// It returns the bytes of the frames' bodies and of them the payload.
// The stream's state is checked under the frame conn's write lock, so no
// chunk follows the FIN that Close queues after setting closed.
//
// The wait for the write lock is bounded by the write deadline and ctx
// (and ends when the link fails); the writes to the link by the link's
// WriteTimeout. A deadline (the write deadline or ctx's) sooner than
// WriteTimeout bounds this Write's wait for those writes as well: the
// frames go from a goroutine of their own (see frameConn.writeDetached),
// and when the deadline passes first, the Write returns with them
// counted as written (they are committed to the link) and a timeout, and
// the turns w holds for them end only once they are written. A deadline
// that passes before the frames start fails the Write alone, with
// nothing written.
func (st *Stream) sendChunks(ctx context.Context, w *writeOp, p []byte, k int) (used, payload int, err error) {
	fc := st.sess.fc
	dl := st.linkDeadline(ctx)
	if err := fc.lockFor(ctx.Done(), dl); err != nil {
		return 0, 0, st.linkErr(err, ctx)
	}
	if st.localReset.Load() || st.remoteReset.Load() || st.closed.Load() || st.sess.ys.IsClosed() {
		fc.unlock()
		return 0, 0, st.writeErr()
	}
	var prefix []byte
	if !st.hdrDone.Load() {
		prefix = st.hdr
	}
	payload = min(len(p), k-len(prefix))
	if fc.detaches(dl) {
		if !time.Now().Before(dl) {
			fc.unlock()
			return 0, 0, st.deadlineErr(ctx)
		}
		if d := fc.writeDetached(st.id, prefix, p[:payload], st.sess.sched.chunk); d != nil {
			// The lock is the goroutine's now; the frames are committed.
			if prefix != nil {
				st.hdrDone.Store(true)
			}
			return st.awaitDetached(ctx, w, d, dl, len(prefix)+payload, payload)
		}
	}
	used, err = fc.writeDataDeadline(st.id, prefix, p[:payload], st.sess.sched.chunk, dl)
	if used > 0 && prefix != nil {
		st.hdrDone.Store(true) // whole frames only: the first one went
	}
	fc.unlock() // and if the link failed, the session is told
	if used == 0 {
		payload = 0
	} else {
		payload = used - len(prefix)
	}
	if err != nil {
		return used, payload, st.linkErr(err, ctx)
	}
	return used, payload, nil
}

// awaitDetached waits for d, a detached write of used body bytes of
// which payload are the Write's, until dl or ctx's end. If it gives up
// first, d ends w's turns once it is over, in w's stead: until then its
// frames still count against MaxInFlightChunks.
func (st *Stream) awaitDetached(ctx context.Context, w *writeOp, d *detachedWrite, dl time.Time, used, payload int) (int, int, error) {
	t := time.NewTimer(time.Until(dl))
	defer t.Stop()
	var err error
	select {
	case <-d.done:
		if d.err != nil {
			return 0, 0, st.linkErr(d.err, ctx)
		}
		return used, payload, nil
	case <-t.C:
		err = st.deadlineErr(ctx)
	case <-ctx.Done():
		err = contextErr("mux: write", ctx)
	}
	sc, n := st.sess.sched, w.n
	if d.handOver(func() { sc.endTurns(n) }) {
		w.n = 0
	}
	return used, payload, err
}

// sendHeader sends the header alone, if it has not gone yet.
func (st *Stream) sendHeader() error {
	fc := st.sess.fc
	if err := fc.lockFor(nil, time.Time{}); err != nil {
		return st.sess.closedErr() // the link failed
	}
	if st.hdrDone.Load() {
		fc.unlock()
		return nil
	}
	if st.localReset.Load() || st.remoteReset.Load() || st.sess.ys.IsClosed() {
		fc.unlock()
		return st.writeErr()
	}
	// A header is at most 131 bytes and goes before any payload, on the
	// stream's fresh 256 KiB window: it needs no turn.
	st.sess.sched.debit(st.fl, len(st.hdr))
	err := fc.writeDataLocked(st.id, st.hdr, nil, st.sess.sched.chunk)
	if err == nil {
		st.hdrDone.Store(true)
	}
	fc.unlock()
	if err != nil {
		return st.sess.closedErr() // the link failed
	}
	return nil
}

// linkDeadline returns the deadline of this Write's writes to the link:
// the write deadline or ctx's, whichever is earlier; zero if neither.
func (st *Stream) linkDeadline(ctx context.Context) time.Time {
	dl := st.writeDeadline()
	if c, ok := ctx.Deadline(); ok && (dl.IsZero() || c.Before(dl)) {
		dl = c
	}
	return dl
}

// linkErr maps an error of sendChunks' wait for the link or of its writes
// to the link.
func (st *Stream) linkErr(err error, ctx context.Context) error {
	switch err {
	case os.ErrDeadlineExceeded:
		// This Write's deadline passed before its frames went: the link
		// is fine.
		return st.deadlineErr(ctx)
	case errLockAborted:
		return contextErr("mux: write", ctx)
	}
	// The link failed (under this Write, or before).
	return st.sess.closedErr()
}

// deadlineErr is the error of a Write whose deadline (the write deadline,
// or ctx's) passed before it was done.
func (st *Stream) deadlineErr(ctx context.Context) error {
	if c, ok := ctx.Deadline(); ok && !time.Now().Before(c) {
		if ctx.Err() != nil {
			return contextErr("mux: write", ctx)
		}
		// Its timer has not fired yet.
		return &multiError{"mux: write: " + context.DeadlineExceeded.Error(), []error{context.DeadlineExceeded, os.ErrDeadlineExceeded}}
	}
	return os.ErrDeadlineExceeded
}

// writeErr returns why the stream cannot be written to, or nil.
func (st *Stream) writeErr() error {
	switch {
	case st.localReset.Load() || st.remoteReset.Load():
		return st.resetErr()
	case st.closed.Load():
		return yamux.ErrStreamClosed
	case st.sess.ys.IsClosed():
		return st.sess.closedErr()
	}
	return nil
}

// waitErr maps the scheduler's reasons for giving up a wait.
func (st *Stream) waitErr(err error, ctx context.Context) error {
	switch {
	case err == errSchedClosed:
		return st.sess.closedErr()
	case err == errStreamDone:
		if e := st.writeErr(); e != nil {
			return e
		}
		return yamux.ErrStreamClosed
	case err == os.ErrDeadlineExceeded || errors.Is(err, ErrBackpressure):
		return err
	case ctx != nil && (err == context.Canceled || err == context.DeadlineExceeded):
		return contextErr("mux: write", ctx)
	}
	return err
}

// contextErr is the error of an operation given up because ctx ended: it
// wraps ctx.Err() and the cause, if any, and for a deadline also
// os.ErrDeadlineExceeded.
func contextErr(op string, ctx context.Context) error {
	err := ctx.Err()
	errs := []error{err}
	msg := op + ": " + err.Error()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		errs = append(errs, cause)
		msg += ": " + cause.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, os.ErrDeadlineExceeded)
	}
	return &multiError{msg, errs}
}

// Close half-closes the stream (see Stream) and frees its slot. On an
// outbound stream nothing was written to, it sends the header first, so
// the remote's handler runs and reads EOF. Idempotent; returns nil.
func (st *Stream) Close() error {
	if st.closed.Swap(true) {
		return nil
	}
	// A Write waiting for room, a turn or window returns ErrStreamClosed;
	// one writing a chunk finishes it, and the FIN queued below follows it
	// (sendChunk checks closed under the link's write lock).
	st.sess.sched.kick(st)
	if !st.hdrDone.Load() {
		_ = st.sendHeader()
	}
	// The slot goes before the FIN, so a remote that has read EOF finds it
	// free.
	st.sess.release(st)
	_ = st.ys.Close()
	return nil
}

// Reset aborts the stream in both directions: the remote's Read and Write
// fail with a *ResetError (code ResetApplication, wrapping
// ErrStreamReset), and so do this side's, including ones blocked now. The
// slot is freed. Idempotent; returns nil.
func (st *Stream) Reset() error {
	st.reset(ResetApplication)
	return nil
}

// reset is Reset with the code the remote is sent.
func (st *Stream) reset(code ResetCode) {
	if st.localReset.Swap(true) {
		return
	}
	st.closed.Store(true)
	st.sess.sched.kick(st) // a Write waiting in the scheduler
	st.refuse(code)
	// Wake a Read blocked in yamux; it then sees localReset.
	_ = st.ys.SetDeadline(time.Unix(1, 0))
}

// refuse frees the stream's slot, sends a RST with code (unless the
// remote already reset the stream or the session is gone) and makes
// yamux forget the stream: from the RST on, the session's guard drops
// what the remote still sends for it, and yamux frees it at once
// instead of holding it, and what it buffered, until the remote's FIN
// (which will not come) or StreamCloseTimeout. The slot goes first, so
// a remote that sees the reset finds the slot free.
func (st *Stream) refuse(code ResetCode) {
	st.localReset.Store(true)
	st.sess.release(st)
	if !st.remoteReset.Load() && !st.sess.ys.IsClosed() {
		if err := st.sess.fc.injectRST(st.id, code); err != nil {
			st.sess.log.Debug().Err(err).Uint32("stream", st.id).Msg("sending reset failed")
		}
	}
	_ = st.ys.Close()
	st.sess.forgetInYamux(st.id)
}

// SetDeadline sets the read and write deadlines (see net.Conn).
func (st *Stream) SetDeadline(t time.Time) error {
	if err := st.SetWriteDeadline(t); err != nil {
		return err
	}
	return st.SetReadDeadline(t)
}

// SetReadDeadline sets the deadline for pending and future Reads.
func (st *Stream) SetReadDeadline(t time.Time) error {
	if st.localReset.Load() {
		return nil
	}
	return st.ys.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline for pending and future Writes: it
// bounds their waits for queue room, turns, window and the link (see
// Write). A Write already waiting for its frames to reach the link keeps
// the deadline it had.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
		if ns == 0 {
			ns = 1 // 0 means none
		}
	}
	st.wdl.Store(ns)
	st.sess.sched.kick(st)
	return nil
}

// writeDeadline returns the write deadline, zero if none.
func (st *Stream) writeDeadline() time.Time {
	if ns := st.wdl.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// noteFrame records a FIN or RST from the remote. Called under sess.mu.
func (st *Stream) noteFrame(flags uint16, code uint32) {
	// A RST after our own Reset is the remote's acknowledgement (or a
	// crossing reset): the stream stays reset locally.
	if flags&flagRST != 0 && !st.localReset.Load() {
		st.rstCode.Store(code)
		st.remoteReset.Store(true)
	}
	if flags&flagFIN != 0 {
		st.finSeen.Store(true)
	}
}

// resetErr returns the error for a reset stream: the remote's reset (with
// its code) if one came, else our own.
func (st *Stream) resetErr() error {
	if st.remoteReset.Load() {
		return &ResetError{Code: ResetCode(st.rstCode.Load()), Remote: true, Protocol: st.protocol}
	}
	if st.localReset.Load() {
		return &ResetError{Code: ResetApplication, Protocol: st.protocol}
	}
	return &ResetError{Code: ResetUnknown, Remote: true, Protocol: st.protocol}
}

// mapErr translates a yamux stream error.
func (st *Stream) mapErr(err error) error {
	switch err {
	case io.EOF:
		// yamux reports EOF both for the remote's FIN and for a stream
		// force-closed because the session ended.
		if st.finSeen.Load() || !st.sess.ys.IsClosed() {
			return io.EOF
		}
		return st.sess.closedErr()
	case yamux.ErrConnectionReset:
		return st.resetErr()
	case yamux.ErrTimeout:
		if st.localReset.Load() {
			return st.resetErr()
		}
		if st.sess.ys.IsClosed() {
			return st.sess.closedErr() // see Session.wakeStreams
		}
		return os.ErrDeadlineExceeded
	case yamux.ErrSessionShutdown:
		return st.sess.closedErr()
	case yamux.ErrStreamClosed:
		if st.localReset.Load() {
			return st.resetErr()
		}
		if !st.closed.Load() && st.sess.ys.IsClosed() {
			return st.sess.closedErr()
		}
	}
	return err
}
