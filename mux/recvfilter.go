package mux

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// The read side of the frame conn is a filter between the link and
// yamux. It follows the frame boundaries and asks the session about each
// frame header (frameTracker.admit) before yamux sees it. A frame the
// session turns down is cut out of the byte stream, header and body, so
// yamux never learns of it: a stream refused at its SYN costs no yamux
// state and no buffer, and data for a stream that was reset is discarded
// here instead of being buffered by yamux until StreamCloseTimeout. The
// filter can also hand yamux a frame the remote never sent (inject): a
// RST for a stream this side reset, so that yamux forgets the stream at
// once instead of holding it half-closed.
//
// Frames that pass are handed on in place: Read reads from the link into
// yamux's buffer and only moves bytes when a frame was cut out, so the
// data path copies nothing more than before.

// rxState is what Read owes yamux besides the bytes of the link: output
// that did not fit yamux's buffer, and frames to inject at the next frame
// boundary.
type rxState struct {
	spill    []byte // output not yet handed to yamux
	spillOff int
	scratch  [minFilterRead]byte
	err      error // set by the guard (on this goroutine): the session must end

	mu       sync.Mutex
	injected [][frameHeaderLen]byte // frames for yamux at the next boundary
	queued   atomic.Int32           // len(injected), read without mu by Read
}

// minFilterRead is the smallest buffer Read filters in place; a smaller
// one (yamux's bufio.Reader never asks for less than a few KiB, but a
// Read may) is served through rxState.scratch.
const minFilterRead = 64

// maxInjected bounds the frames waiting to be injected. A session injects
// one per stream it resets, and streams are bounded by MaxStreams; past
// the bound the frame is dropped and yamux frees the stream at its
// StreamCloseTimeout, as it would without the filter.
const maxInjected = 4096

// injectIn queues f to be handed to yamux as if read from the link, at
// the next frame boundary of the incoming bytes (that is, once Read is
// next called and is between frames: when the link is idle, with the
// next frame that arrives).
func (c *frameConn) injectIn(f [frameHeaderLen]byte) {
	c.rx.mu.Lock()
	if len(c.rx.injected) < maxInjected {
		c.rx.injected = append(c.rx.injected, f)
		c.rx.queued.Store(int32(len(c.rx.injected)))
	}
	c.rx.mu.Unlock()
}

// Read reads from the link, counts the bytes, notes the time, and hands
// yamux the frames the tracker lets through, plus the injected ones.
// Only yamux's recv goroutine calls it.
func (c *frameConn) Read(p []byte) (int, error) {
	for {
		if c.rx.err != nil {
			return 0, c.rx.err
		}
		if n := c.drainSpill(p); n > 0 {
			return n, nil
		}
		t := &c.tracker
		if t.atBoundary() && c.takeInjected() {
			continue
		}
		buf := p
		if len(p) < minFilterRead {
			buf = c.rx.scratch[:]
		}
		// A header cut by the previous read is filtered again from its
		// first byte, in front of the new bytes: the frame is then whole
		// in buf by the time its header is, and output never overtakes
		// the input it is made of.
		k := copy(buf, t.hdr[:t.n])
		t.n = 0
		n, err := c.read(buf[k:])
		if n > 0 {
			c.in.Add(uint64(n))
			c.totals.addIn(uint64(n))
			c.lastIn.Store(int64(time.Since(monoBase)))
		}
		out := t.process(buf[:k+n])
		if c.rx.err != nil {
			return 0, c.rx.err
		}
		if len(p) < minFilterRead && out > 0 {
			c.rx.spill = append(c.rx.spill[:0], buf[:out]...)
			c.rx.spillOff = 0
			out = c.drainSpill(p)
		}
		if out > 0 || err != nil {
			return out, err
		}
	}
}

// drainSpill copies pending output into p.
func (c *frameConn) drainSpill(p []byte) int {
	if c.rx.spillOff == len(c.rx.spill) {
		return 0
	}
	n := copy(p, c.rx.spill[c.rx.spillOff:])
	c.rx.spillOff += n
	if c.rx.spillOff == len(c.rx.spill) {
		c.rx.spill, c.rx.spillOff = c.rx.spill[:0], 0
	}
	return n
}

// takeInjected moves the injected frames to the spill, reporting whether
// there were any.
func (c *frameConn) takeInjected() bool {
	if c.rx.queued.Load() == 0 {
		return false
	}
	c.rx.mu.Lock()
	defer c.rx.mu.Unlock()
	if len(c.rx.injected) == 0 {
		return false
	}
	for _, f := range c.rx.injected {
		c.rx.spill = append(c.rx.spill, f[:]...)
	}
	c.rx.injected = c.rx.injected[:0]
	c.rx.queued.Store(0)
	return true
}

// frameTracker follows yamux frame boundaries in the bytes read from the
// link. For each frame header it asks admit (if set) whether the frame
// may pass; a frame that passes is reported: every data or window update
// frame that carries FIN or RST to onFrame, every window update but RSTs
// (its delta) and data frames that carry SYN (delta 0) to onCredit, every
// stream opened to onSYN, and every GoAway to onGoAway. On bytes that
// cannot be yamux frames (bad version or type) it stops tracking and
// passes everything on, leaving yamux to report the protocol error, which
// ends the session.
type frameTracker struct {
	hdr    [frameHeaderLen]byte
	n      int    // header bytes collected in hdr
	fwd    uint32 // body bytes of a passed frame still to come
	drop   uint32 // body bytes of a dropped frame still to come
	broken bool

	// admit, if set, sees each frame header first and says whether the
	// frame may reach yamux. It must not block: it runs on yamux's recv
	// goroutine.
	admit func(h *[frameHeaderLen]byte) bool
	// onFrame gets the stream ID, flags, and for a window update with RST
	// the code (its length field); 0 otherwise.
	onFrame func(id uint32, flags uint16, code uint32)
	// onCredit gets the stream ID, flags and window delta.
	onCredit func(id uint32, flags uint16, delta uint32)
	// onSYN gets the ID of each stream the remote opens (a frame with
	// SYN); onGoAway the code of each GoAway frame.
	onSYN    func(id uint32)
	onGoAway func(code uint32)
}

// atBoundary reports whether the bytes filtered so far end between two
// frames.
func (t *frameTracker) atBoundary() bool {
	return t.n == 0 && t.fwd == 0 && t.drop == 0
}

// feed follows p without changing it (tests use it to watch a byte
// stream).
func (t *frameTracker) feed(p []byte) {
	buf := make([]byte, t.n+len(p))
	copy(buf[copy(buf, t.hdr[:t.n]):], p)
	t.n = 0
	t.process(buf)
}

// process filters buf in place: it returns n, and buf[:n] holds the bytes
// of the frames that passed. The bytes of a header that buf ends inside
// are kept in t.hdr[:t.n] and left out of the output; the caller puts
// them in front of the next bytes (and sets t.n to 0) before the next
// call, so that a header is always whole within one call's buf.
func (t *frameTracker) process(buf []byte) int {
	r, w := 0, 0
	for r < len(buf) {
		switch {
		case t.broken:
			w += copy(buf[w:], buf[r:])
			r = len(buf)
		case t.fwd > 0:
			k := int(min(uint32(len(buf)-r), t.fwd))
			if w != r {
				copy(buf[w:], buf[r:r+k])
			}
			w, r, t.fwd = w+k, r+k, t.fwd-uint32(k)
		case t.drop > 0:
			k := int(min(uint32(len(buf)-r), t.drop))
			r, t.drop = r+k, t.drop-uint32(k)
		default:
			k := copy(t.hdr[t.n:], buf[r:])
			t.n += k
			r += k
			if t.n < frameHeaderLen {
				break // the rest of the header comes with the next read
			}
			t.n = 0
			if t.hdr[0] != frameVersion || t.hdr[1] > typeGoAway {
				t.broken = true
				w += copy(buf[w:], t.hdr[:])
				continue
			}
			var body uint32
			if t.hdr[1] == typeData {
				body = binary.BigEndian.Uint32(t.hdr[8:12])
			}
			if t.admit != nil && !t.admit(&t.hdr) {
				t.drop = body
				continue
			}
			w += copy(buf[w:], t.hdr[:]) // r >= w+12: the header was read here
			t.fwd = body
			t.frame(t.hdr[:])
		}
	}
	return w
}

func (t *frameTracker) frame(h []byte) {
	flags := binary.BigEndian.Uint16(h[2:4])
	length := binary.BigEndian.Uint32(h[8:12])
	if flags&flagSYN != 0 && h[1] <= typeWindowUpdate && t.onSYN != nil {
		t.onSYN(binary.BigEndian.Uint32(h[4:8]))
	}
	switch h[1] {
	case typeData:
		if flags&flagSYN != 0 && t.onCredit != nil {
			t.onCredit(binary.BigEndian.Uint32(h[4:8]), flags, 0)
		}
		if flags&(flagFIN|flagRST) != 0 && t.onFrame != nil {
			t.onFrame(binary.BigEndian.Uint32(h[4:8]), flags, 0)
		}
	case typeWindowUpdate:
		if flags&flagRST == 0 && t.onCredit != nil {
			t.onCredit(binary.BigEndian.Uint32(h[4:8]), flags, length)
		}
		if flags&(flagFIN|flagRST) != 0 && t.onFrame != nil {
			var code uint32
			if flags&flagRST != 0 {
				code = length
			}
			t.onFrame(binary.BigEndian.Uint32(h[4:8]), flags, code)
		}
	case typeGoAway:
		if t.onGoAway != nil {
			t.onGoAway(length)
		}
	}
}
