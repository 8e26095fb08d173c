package mux

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// yamux v0.1.2 wire format (spec.md in the yamux module): every frame
// starts with a 12-byte header
//
//	[1] version = 0  [1] type  [2] flags  [4] stream ID  [4] length
//
// and only data frames (type 0) have a body, of length bytes.
const (
	frameHeaderLen = 12

	frameVersion = 0

	typeData         = 0
	typeWindowUpdate = 1
	typeGoAway       = 3

	flagFIN = 0x4
	flagRST = 0x8
)

// tlsRecord is the largest TLS record's plaintext: crypto/tls cuts every
// Write into records of at most this many bytes, and each record costs a
// seal, 22 bytes of overhead and (in crypto/tls) a write to the socket.
const tlsRecord = 16 << 10

// joinBufSize is the size of the buffers in which a data frame's header
// is joined with the start of its body. The first Write of a frame is at
// most one TLS record; the rest of a longer body follows in a second
// Write, straight from yamux's buffer. That takes as few records as
// joining the whole frame would, copies at most 16 KiB, and keeps no
// large buffer in an idle session (the buffers come from a pool shared by
// all sessions).
const joinBufSize = tlsRecord

// joinSaves reports whether joining a 12-byte header with a body of n
// bytes saves a TLS record over writing them apart (1 + ceil(n/16K)
// records). It does unless n is a multiple of 16 KiB or within 12 bytes
// under one, as the 64 KiB frames of large writes are: then joining would
// only add a copy, and the header goes alone, as yamux writes it.
func joinSaves(n int) bool {
	return (n+frameHeaderLen+tlsRecord-1)/tlsRecord < 1+(n+tlsRecord-1)/tlsRecord
}

var joinPool = sync.Pool{New: func() any {
	b := make([]byte, 0, joinBufSize)
	return &b
}}

// errInjectUnsafe: the writes seen do not follow yamux's pattern (a data
// header, then exactly its body), so no frame boundary is known at which
// a RST could be injected.
var errInjectUnsafe = errors.New("mux: cannot inject a frame: write stream out of step")

// frameConn sits between yamux and the link. See ARCHITECTURE.md.
//
// Write side: yamux's sendLoop (a single goroutine) writes each frame's
// header and body with two Writes. A data header is held back and joined
// with (the start of) its body into one Write to the link, whenever that
// saves a TLS record (see joinSaves); everything else passes through. injectRST writes a reset frame carrying a reason code, at a
// frame boundary.
//
// Read side: bytes are counted, and a frameTracker follows the frame
// boundaries to report FIN and RST flags (with the RST's code) before
// yamux, which reads through a bufio.Reader over this conn, acts on them.
type frameConn struct {
	net.Conn

	in, out atomic.Uint64
	lastIn  atomic.Int64 // when bytes last arrived: nanoseconds since monoBase
	rstSent [NumResetCodes]atomic.Uint64

	tracker frameTracker // used only by Read: yamux's one recv goroutine

	mu        sync.Mutex // serialises writes to Conn and guards below
	stashed   bool       // hdr holds a data header whose body comes next
	hdr       [frameHeaderLen]byte
	bodyLen   uint32                 // length field of hdr
	pending   [][frameHeaderLen]byte // frames injected while stashed
	outOfStep bool                   // see errInjectUnsafe
}

func newFrameConn(c net.Conn, onFrame func(id uint32, flags uint16, code uint32)) *frameConn {
	fc := &frameConn{Conn: c}
	fc.tracker.onFrame = onFrame
	fc.lastIn.Store(int64(time.Since(monoBase)))
	return fc
}

// monoBase is the origin of frameConn.lastIn. Durations since it are read
// off the monotonic clock alone (time.Since of a time that has a monotonic
// reading makes no wall clock call), and monoBase.Add of one is a
// time.Time that keeps a monotonic reading.
var monoBase = time.Now()

// lastRead returns when bytes last arrived (or the conn was made).
func (c *frameConn) lastRead() time.Time {
	return monoBase.Add(time.Duration(c.lastIn.Load()))
}

// Read reads from the link, counts the bytes, notes the time and feeds
// them to the tracker.
func (c *frameConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.in.Add(uint64(n))
		c.lastIn.Store(int64(time.Since(monoBase)))
		c.tracker.feed(p[:n])
	}
	return n, err
}

// Write is called by yamux's sendLoop only.
func (c *frameConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stashed {
		c.stashed = false
		if uint32(len(b)) != c.bodyLen {
			// Not yamux v0.1.2's pattern. The bytes still go out in order,
			// but frame boundaries are no longer known.
			c.outOfStep = true
		}
		n, err := c.writeJoined(b)
		if err == nil && len(c.pending) > 0 {
			err = c.flushPending()
		}
		return n, err
	}
	if !c.outOfStep && len(b) == frameHeaderLen && b[0] == frameVersion {
		switch b[1] {
		case typeData:
			if l := binary.BigEndian.Uint32(b[8:12]); l > 0 {
				copy(c.hdr[:], b)
				c.bodyLen = l
				c.stashed = true
				return len(b), nil
			}
		case typeWindowUpdate:
			c.countRST(b)
		}
	}
	return c.writeRaw(b)
}

func (c *frameConn) writeRaw(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(uint64(n))
	return n, err
}

// writeJoined writes c.hdr and body, the first joinBufSize bytes of them
// in one Write when that saves a TLS record (see joinSaves). It returns
// the number of body bytes written.
func (c *frameConn) writeJoined(body []byte) (int, error) {
	if !joinSaves(len(body)) {
		if _, err := c.writeRaw(c.hdr[:]); err != nil {
			return 0, err
		}
		return c.writeRaw(body)
	}
	bp := joinPool.Get().(*[]byte)
	k := min(len(body), joinBufSize-frameHeaderLen)
	buf := append(append((*bp)[:0], c.hdr[:]...), body[:k]...)
	n, err := c.Conn.Write(buf)
	*bp = buf[:0]
	joinPool.Put(bp)
	c.out.Add(uint64(n))
	if err != nil {
		return max(0, n-frameHeaderLen), err
	}
	if k == len(body) {
		return k, nil
	}
	m, err := c.writeRaw(body[k:])
	return k + m, err
}

func (c *frameConn) flushPending() error {
	for _, f := range c.pending {
		c.countRST(f[:])
		if _, err := c.writeRaw(f[:]); err != nil {
			c.pending = c.pending[:0]
			return err
		}
	}
	c.pending = c.pending[:0]
	return nil
}

// countRST counts b, a 12-byte window update frame, if it carries RST.
func (c *frameConn) countRST(b []byte) {
	if binary.BigEndian.Uint16(b[2:4])&flagRST != 0 {
		c.rstSent[ResetCode(binary.BigEndian.Uint32(b[8:12])).bucket()].Add(1)
	}
}

// injectRST sends a reset for stream id with the code in the length field
// (window update frame, flag RST). If a data header is held back, the
// frame is queued to follow that header's body. The frame is either
// written or queued when injectRST returns.
func (c *frameConn) injectRST(id uint32, code ResetCode) error {
	var f [frameHeaderLen]byte
	f[0] = frameVersion
	f[1] = typeWindowUpdate
	binary.BigEndian.PutUint16(f[2:4], flagRST)
	binary.BigEndian.PutUint32(f[4:8], id)
	binary.BigEndian.PutUint32(f[8:12], uint32(code))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outOfStep {
		return errInjectUnsafe
	}
	if c.stashed {
		c.pending = append(c.pending, f)
		return nil
	}
	c.countRST(f[:])
	_, err := c.writeRaw(f[:])
	return err
}

// frameTracker follows yamux frame boundaries in the bytes read from the
// link and reports every data or window update frame that carries FIN or
// RST. It never fails: on bytes that cannot be yamux frames (bad version
// or type) it stops tracking and leaves yamux to report the protocol
// error, which ends the session.
type frameTracker struct {
	hdr    [frameHeaderLen]byte
	n      int    // header bytes collected in hdr
	skip   uint32 // data frame body bytes still to pass over
	broken bool

	// onFrame gets the stream ID, flags, and for a window update with RST
	// the code (its length field); 0 otherwise.
	onFrame func(id uint32, flags uint16, code uint32)
}

func (t *frameTracker) feed(p []byte) {
	for len(p) > 0 && !t.broken {
		if t.skip > 0 {
			k := uint32(len(p))
			if k > t.skip {
				k = t.skip
			}
			t.skip -= k
			p = p[k:]
			continue
		}
		if t.n == 0 && len(p) >= frameHeaderLen {
			t.frame(p[:frameHeaderLen])
			p = p[frameHeaderLen:]
			continue
		}
		k := copy(t.hdr[t.n:], p)
		t.n += k
		p = p[k:]
		if t.n == frameHeaderLen {
			t.n = 0
			t.frame(t.hdr[:])
		}
	}
}

func (t *frameTracker) frame(h []byte) {
	if h[0] != frameVersion || h[1] > typeGoAway {
		t.broken = true
		return
	}
	flags := binary.BigEndian.Uint16(h[2:4])
	length := binary.BigEndian.Uint32(h[8:12])
	switch h[1] {
	case typeData:
		t.skip = length
		if flags&(flagFIN|flagRST) != 0 && t.onFrame != nil {
			t.onFrame(binary.BigEndian.Uint32(h[4:8]), flags, 0)
		}
	case typeWindowUpdate:
		if flags&(flagFIN|flagRST) != 0 && t.onFrame != nil {
			var code uint32
			if flags&flagRST != 0 {
				code = length
			}
			t.onFrame(binary.BigEndian.Uint32(h[4:8]), flags, code)
		}
	}
}
