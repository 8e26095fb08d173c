package mux

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/peerlink/peerlink/peer"
)

// Stream is one stream of a Session; it implements net.Conn. Use one
// reader and one writer goroutine at a time (yamux is not safe with
// concurrent Reads on one stream).
//
// Close is a half close, as in yamux: it ends this side's writes (the
// remote reads EOF) and frees the stream slot, while Read keeps returning
// what the remote sends until the remote closes too. Reset aborts both
// directions.
type Stream struct {
	sess     *Session
	ys       *yamux.Stream
	id       uint32
	inbound  bool
	protocol string // for an inbound stream, set once its header is read
	prio     Priority

	// Opener only: the stream header still to send, under hdrMu, and
	// whether it has gone (always true for an inbound stream).
	hdrDone atomic.Bool
	hdrMu   sync.Mutex
	hdr     []byte

	// Set by the session's frame tracker before yamux acts on the frame.
	rstCode     atomic.Uint32
	remoteReset atomic.Bool
	finSeen     atomic.Bool

	localReset atomic.Bool
	closed     atomic.Bool // Close or Reset called

	// Guarded by sess.mu.
	released   bool
	releasedAt time.Time
}

// firstChunk is how much of the first Write travels in one yamux frame
// with the stream header (the frame then fills one join buffer).
const firstChunk = joinBufSize - frameHeaderLen - maxStreamHeader

// Protocol returns the stream's protocol.
func (st *Stream) Protocol() string { return st.protocol }

// Priority returns the stream's priority, as the opener set it.
func (st *Stream) Priority() Priority { return st.prio }

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

// Write writes to the stream. The first Write of an outbound stream
// carries the stream header in the same yamux frame. Errors are as for
// Read; after Close, yamux's ErrStreamClosed.
func (st *Stream) Write(b []byte) (int, error) {
	if st.localReset.Load() {
		return 0, st.resetErr()
	}
	if !st.hdrDone.Load() {
		return st.writeFirst(b)
	}
	n, err := st.ys.Write(b)
	if err != nil {
		err = st.mapErr(err)
	}
	return n, err
}

// writeFirst sends the header and the start of b as one yamux write.
func (st *Stream) writeFirst(b []byte) (int, error) {
	st.hdrMu.Lock()
	if st.hdrDone.Load() {
		st.hdrMu.Unlock()
		return st.Write(b)
	}
	k := min(len(b), firstChunk)
	buf := make([]byte, 0, len(st.hdr)+k)
	buf = append(append(buf, st.hdr...), b[:k]...)
	hl := len(st.hdr)
	m, err := st.ys.Write(buf)
	if m < hl {
		st.hdr = st.hdr[m:]
		st.hdrMu.Unlock()
		return 0, st.mapErr(err)
	}
	st.hdr = nil
	st.hdrDone.Store(true)
	st.hdrMu.Unlock()
	n := m - hl
	if err != nil {
		return n, st.mapErr(err)
	}
	if k < len(b) {
		m, err := st.Write(b[k:])
		return n + m, err
	}
	return n, nil
}

// sendHeader sends the header alone, if it has not gone yet.
func (st *Stream) sendHeader() error {
	st.hdrMu.Lock()
	defer st.hdrMu.Unlock()
	if st.hdrDone.Load() {
		return nil
	}
	m, err := st.ys.Write(st.hdr)
	st.hdr = st.hdr[m:]
	if len(st.hdr) == 0 {
		st.hdr = nil
		st.hdrDone.Store(true)
		return nil
	}
	return st.mapErr(err)
}

// Close half-closes the stream (see Stream) and frees its slot. On an
// outbound stream nothing was written to, it sends the header first, so
// the remote's handler runs and reads EOF. Idempotent; returns nil.
func (st *Stream) Close() error {
	if st.closed.Swap(true) {
		return nil
	}
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
	if st.localReset.Swap(true) {
		return nil
	}
	st.closed.Store(true)
	st.refuse(ResetApplication)
	// Wake a Read or Write blocked in yamux; they then see localReset.
	_ = st.ys.SetDeadline(time.Unix(1, 0))
	return nil
}

// refuse frees the stream's slot, sends a RST with code (unless the
// remote already reset the stream or the session is gone) and closes the
// yamux stream, whose state yamux then holds until the remote's FIN,
// which will not come, or StreamCloseTimeout. The slot goes first, so a
// remote that sees the reset finds the slot free.
func (st *Stream) refuse(code ResetCode) {
	st.localReset.Store(true)
	st.sess.release(st)
	if !st.remoteReset.Load() && !st.sess.ys.IsClosed() {
		if err := st.sess.fc.injectRST(st.id, code); err != nil {
			st.sess.log.Debug().Err(err).Uint32("stream", st.id).Msg("sending reset failed")
		}
	}
	_ = st.ys.Close()
}

// SetDeadline sets the read and write deadlines (see net.Conn).
func (st *Stream) SetDeadline(t time.Time) error {
	if st.localReset.Load() {
		return nil
	}
	return st.ys.SetDeadline(t)
}

// SetReadDeadline sets the deadline for pending and future Reads.
func (st *Stream) SetReadDeadline(t time.Time) error {
	if st.localReset.Load() {
		return nil
	}
	return st.ys.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline for pending and future Writes.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	if st.localReset.Load() {
		return nil
	}
	return st.ys.SetWriteDeadline(t)
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
