package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
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

	flagSYN = 0x1
	flagACK = 0x2
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
// Write side: three writers share the link, one frame at a time under
// the write lock. yamux's sendLoop (a single goroutine) writes the frames
// yamux makes (window updates, SYN, FIN, RST, pings, go away) with one
// Write each, and a data frame as two Writes, header then body; a data
// header is held back and joined with (the start of) its body into one
// Write to the link, whenever that saves a TLS record (see joinSaves).
// Stream writers write the data frames of mux streams with writeDataLocked,
// each from its own goroutine, in the turns the session's scheduler gives
// them (yamux itself writes no data frame for a mux stream). injectRST
// writes a reset frame carrying a reason code. sent is told of every SYN
// and RST yamux writes, before it goes.
//
// Every write to the link has a deadline, now + the session's
// WriteTimeout (see arm), and the first write to the link that fails, for
// whatever reason, ends the link: nothing is written after it (part of a
// frame may have gone), every writer waiting for the lock is let go, and
// the session is told (see unlock). A stream writer with a deadline of
// its own sooner than that writes in a goroutine of its own, which can
// finish the frames without it (see writeDetached).
//
// Read side: bytes are counted, and a frameTracker follows the frame
// boundaries to report FIN and RST flags (with the RST's code), window
// updates and SYNs before yamux, which reads through a bufio.Reader over
// this conn, acts on them.
type frameConn struct {
	net.Conn

	in, out atomic.Uint64
	totals  *Totals       // the node's, also counting in and out (nil: none)
	dataOut atomic.Uint64 // bytes of data frame bodies written by writeDataLocked
	lastIn  atomic.Int64  // when bytes last arrived: nanoseconds since monoBase
	rstSent [NumResetCodes]atomic.Uint64

	tracker frameTracker // used only by Read: yamux's one recv goroutine
	rx      rxState      // what Read owes yamux besides the link's bytes

	// Read-ahead (plain TCP links only); used only by Read.
	readAhead    bool
	busy         bool    // the last read from the link filled its buffer
	ra           *[]byte // pooled buffer holding ra[raOff:raEnd], or nil
	raOff, raEnd int
	raErr        error // returned with the buffer's last bytes

	// sent, if set, is called under the write lock for each frame yamux
	// writes that carries SYN, FIN or RST, before it is written.
	sent func(id uint32, flags uint16)

	// Refusals after a local GoAway. yamux answers every SYN that
	// arrives after its GoAway with a plain RST, as it does a SYN past
	// its accept backlog; those RSTs get code ResetGoingAway here, so
	// that the opener learns the stream was refused unserved and can be
	// opened elsewhere. goAway is set just before yamux's own flag, so
	// every SYN yamux refuses for the GoAway is in refusing; one that
	// slipped in before yamux's flag is taken off again when the accept
	// loop takes its stream (see accepted).
	goAway   atomic.Bool
	refuseMu sync.Mutex
	refusing map[uint32]struct{} // remote's SYNs seen since goAway

	// wlock serialises writes to Conn and guards the fields below. It is
	// a channel rather than a sync.Mutex because its holder may block on
	// the link for long: a goroutine waiting on a channel is durably
	// blocked for testing/synctest, one waiting on a mutex is not (a
	// virtual-time test of a slow link would freeze), and channel waiters
	// queue in order, as the scheduler's turns were granted.
	wlock     chan struct{}
	stashed   bool // hdr holds a data header whose body comes next
	hdr       [frameHeaderLen]byte
	bodyLen   uint32                 // length field of hdr
	pending   [][frameHeaderLen]byte // frames injected while stashed
	outOfStep bool                   // see errInjectUnsafe

	// Write deadlines (see arm), as durations since monoBase (negative in
	// a synctest bubble, whose clock has no monotonic reading).
	writeTimeout time.Duration // 0: none (a frame conn without a session)
	rearmSlack   time.Duration // see arm
	armed        time.Duration // the write deadline set on Conn, if isArmed
	isArmed      bool

	// Detached writes (see writeDetached): their goroutines, which
	// waitDetached waits for; once it is called none starts.
	detachMu     sync.Mutex
	detachClosed bool
	detachWG     sync.WaitGroup

	// The link's failure: failErr is set, and then failed closed, by the
	// first write to the link that fails; every write after it fails
	// with failErr without touching Conn. onFail (the session's) is
	// called with it once, by the writer that failed, after it unlocks.
	failErr     error
	failed      chan struct{}
	failPending bool
	onFail      func(error)
	peer        string // the remote, for failErr's text

	// writeDataLocked's scratch space.
	batch  [maxBatchFrames]batchFrame
	writev bool // Conn is a *net.TCPConn: hand frames to writev uncopied
	iov    net.Buffers
	iovArr [3 * maxBatchFrames][]byte
}

func newFrameConn(c net.Conn, onFrame func(id uint32, flags uint16, code uint32)) *frameConn {
	fc := &frameConn{Conn: c, wlock: make(chan struct{}, 1)}
	_, tcp := c.(*net.TCPConn)
	fc.writev, fc.readAhead = tcp, tcp
	fc.tracker.onFrame = onFrame
	fc.tracker.onSYN = fc.noteSYN
	fc.lastIn.Store(int64(time.Since(monoBase)))
	return fc
}

// setWrites readies the write side for a session: every write to the
// link gets a write deadline no later than timeout from its start, and
// onFail learns of the first write to the link that fails. peer names the
// remote in the error.
func (c *frameConn) setWrites(timeout time.Duration, peer string, onFail func(error)) {
	c.writeTimeout = timeout
	c.rearmSlack = timeout / 16
	c.peer = peer
	c.onFail = onFail
	c.failed = make(chan struct{})
}

// lock takes the write lock; unlock gives it back, and then tells the
// session if a write to the link failed under it.
func (c *frameConn) lock() { c.wlock <- struct{}{} }

func (c *frameConn) unlock() {
	failed := c.failPending
	c.failPending = false
	<-c.wlock
	if failed && c.onFail != nil {
		c.onFail(c.failErr)
	}
}

// errLockAborted: lockFor gave up because done was closed.
var errLockAborted = errors.New("mux: wait for the link aborted")

// lockFor takes the write lock, waiting until done is closed (then it
// returns errLockAborted) or dl passes (os.ErrDeadlineExceeded) at most.
// Once the link has failed it returns failErr instead, without the lock.
func (c *frameConn) lockFor(done <-chan struct{}, dl time.Time) error {
	select {
	case c.wlock <- struct{}{}:
	default:
		var timeout <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case c.wlock <- struct{}{}:
		case <-c.failed:
			return c.failErr
		case <-done:
			return errLockAborted
		case <-timeout:
			return os.ErrDeadlineExceeded
		}
	}
	if c.failErr != nil {
		<-c.wlock
		return c.failErr
	}
	return nil
}

// arm sets Conn's write deadline for a write to the link starting now:
// now + writeTimeout. It returns now.
//
// SetWriteDeadline costs about a quarter of a microsecond on a TCP socket
// (a 1 KiB write costs 4..9), so the deadline is set again only once the
// one in place is more than rearmSlack (writeTimeout/16) earlier than
// now + writeTimeout, which leaves a write at least 15/16 of
// writeTimeout. (The one in place is never later: it was set to a time
// before its own now + writeTimeout.)
func (c *frameConn) arm() time.Duration {
	now := time.Since(monoBase)
	if c.writeTimeout > 0 {
		if d := now + c.writeTimeout; !c.isArmed || d-c.armed > c.rearmSlack {
			_ = c.Conn.SetWriteDeadline(monoBase.Add(d))
			c.armed, c.isArmed = d, true
		}
	}
	return now
}

// failLocked records err, from a write to the link begun at start, as
// the link's failure (wrapping ErrWriteTimeout if the write timed out),
// and returns it.
func (c *frameConn) failLocked(err error, start time.Duration) error {
	if c.failErr != nil {
		return c.failErr
	}
	if isTimeout(err) {
		remote := c.peer
		if a := c.Conn.RemoteAddr(); a != nil {
			remote += " (" + a.String() + ")"
		}
		took := (time.Since(monoBase) - start).Round(time.Millisecond)
		err = fmt.Errorf("%w: a write to %s did not complete in %v (WriteTimeout %v): %v",
			ErrWriteTimeout, remote, took, c.writeTimeout, err)
	}
	c.failErr = err
	if c.failed != nil {
		close(c.failed)
	}
	c.failPending = true
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// linkWrite writes b to the link under a write deadline, counts it, and
// fails the link if the write fails.
func (c *frameConn) linkWrite(b []byte) (int, error) {
	if c.failErr != nil {
		return 0, c.failErr
	}
	start := c.arm()
	n, err := c.Conn.Write(b)
	c.out.Add(uint64(n))
	c.totals.addOut(uint64(n))
	if err != nil {
		err = c.failLocked(err, start)
	}
	return n, err
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

// readAheadSize is the read-ahead buffer of a plain TCP link.
const readAheadSize = 64 << 10

var readAheadPool = sync.Pool{New: func() any {
	b := make([]byte, readAheadSize)
	return &b
}}

// read reads from the link. On a plain TCP link it reads ahead while the
// link is busy. yamux reads through a 4 KiB bufio.Reader, which costs a
// read system call per frame header and another per body (bodies larger
// than 4 KiB are read past the buffer): with 16 KiB chunks that is
// several calls per 16 KiB, and the calls, not the copying, were most
// of the receiving side's cost. While reads come back full (more is
// waiting), a pooled 64 KiB buffer takes up to that much in one call and
// serves yamux's reads from it; once it is drained it goes back to the
// pool, so an idle session, blocked in Read, holds none. A TLS link needs
// none of this: crypto/tls reads and buffers a whole record at a time.
func (c *frameConn) read(p []byte) (int, error) {
	if c.ra != nil {
		n := copy(p, (*c.ra)[c.raOff:c.raEnd])
		c.raOff += n
		if c.raOff == c.raEnd {
			readAheadPool.Put(c.ra)
			c.ra = nil
			err := c.raErr
			c.raErr = nil
			return n, err
		}
		return n, nil
	}
	if !c.readAhead || !c.busy || len(p) >= readAheadSize/2 {
		n, err := c.Conn.Read(p)
		c.busy = n == len(p)
		return n, err
	}
	ra := readAheadPool.Get().(*[]byte)
	m, err := c.Conn.Read(*ra)
	c.busy = m == len(*ra)
	if m == 0 {
		readAheadPool.Put(ra)
		return 0, err
	}
	c.ra, c.raOff, c.raEnd, c.raErr = ra, 0, m, err
	return c.read(p)
}

// Write is called by yamux's sendLoop only.
func (c *frameConn) Write(b []byte) (int, error) {
	if err := c.lockFor(nil, time.Time{}); err != nil {
		return 0, err
	}
	defer c.unlock()
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
			if c.goAway.Load() {
				if f, ok := c.codeRefusal(b); ok {
					c.noteSent(f[:])
					return c.writeRaw(f[:])
				}
			}
			c.noteSent(b)
		}
	}
	return c.writeRaw(b)
}

// noteSYN records, after a local GoAway, a SYN of the remote's that yamux
// is about to handle (and, unless it came before yamux's own GoAway
// flag, refuse). Called by the tracker on yamux's recv goroutine.
func (c *frameConn) noteSYN(id uint32) {
	if !c.goAway.Load() {
		return
	}
	c.refuseMu.Lock()
	if c.refusing == nil {
		c.refusing = make(map[uint32]struct{})
	}
	c.refusing[id] = struct{}{}
	c.refuseMu.Unlock()
}

// accepted tells c that yamux accepted the remote's stream id: a RST
// yamux sends for it later (at StreamCloseTimeout) is no refusal.
func (c *frameConn) accepted(id uint32) {
	if !c.goAway.Load() {
		return
	}
	c.refuseMu.Lock()
	delete(c.refusing, id)
	c.refuseMu.Unlock()
}

// codeRefusal returns b, a window update frame yamux is writing, with
// code ResetGoingAway in its length field if it is yamux's plain RST for
// a SYN noted by noteSYN.
func (c *frameConn) codeRefusal(b []byte) (f [frameHeaderLen]byte, ok bool) {
	if binary.BigEndian.Uint16(b[2:4])&flagRST == 0 || binary.BigEndian.Uint32(b[8:12]) != 0 {
		return f, false
	}
	id := binary.BigEndian.Uint32(b[4:8])
	c.refuseMu.Lock()
	_, ok = c.refusing[id]
	delete(c.refusing, id)
	c.refuseMu.Unlock()
	if ok {
		copy(f[:], b) // b is yamux's: leave it be
		binary.BigEndian.PutUint32(f[8:12], uint32(ResetGoingAway))
	}
	return f, ok
}

func (c *frameConn) writeRaw(b []byte) (int, error) {
	return c.linkWrite(b)
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
	n, err := c.linkWrite(buf)
	*bp = buf[:0]
	joinPool.Put(bp)
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
		c.noteSent(f[:])
		if _, err := c.writeRaw(f[:]); err != nil {
			c.pending = c.pending[:0]
			return err
		}
	}
	c.pending = c.pending[:0]
	return nil
}

// noteSent counts b, a 12-byte window update frame about to be written,
// if it carries RST, and tells sent of a SYN, FIN or RST.
func (c *frameConn) noteSent(b []byte) {
	flags := binary.BigEndian.Uint16(b[2:4])
	if flags&flagRST != 0 {
		c.rstSent[ResetCode(binary.BigEndian.Uint32(b[8:12])).bucket()].Add(1)
	}
	if flags&(flagSYN|flagFIN|flagRST) != 0 && c.sent != nil {
		c.sent(binary.BigEndian.Uint32(b[4:8]), flags)
	}
}

// writeDataLocked is writeDataDeadline without a stream deadline.
func (c *frameConn) writeDataLocked(id uint32, prefix, body []byte, chunk int) error {
	_, err := c.writeDataDeadline(id, prefix, body, chunk, time.Time{})
	return err
}

// writeDataDeadline writes prefix and then body for stream id as data
// frames of at most chunk body bytes each (prefix, a stream header, goes
// whole in the first); the write lock must be held. Consecutive frames
// go in one write to the link while they fit in batchBufSize: copied
// into one buffer (so that at the default chunk size every frame is
// exactly one TLS record), or, on a *net.TCPConn, handed to writev
// without a copy. A frame larger than that goes as its header (joined
// with the start of its body when that saves a TLS record, see
// joinSaves) and the rest of the body. The caller's bytes are not held
// after return. It returns the body bytes (prefix included) of the
// frames written.
//
// dl is the writing stream's deadline (zero: none). If it has passed
// when a write of whole frames is to start, it returns
// os.ErrDeadlineExceeded, and the link is intact; it does not bound the
// writes to the link (see writeDetached). Any other error is the link's
// failure (failLocked): part of a frame may have gone, and the session
// ends.
func (c *frameConn) writeDataDeadline(id uint32, prefix, body []byte, chunk int, dl time.Time) (int, error) {
	if c.failErr != nil {
		return 0, c.failErr
	}
	for c.stashed {
		// yamux's sendLoop is between a data header and its body. It never
		// is for mux streams (yamux writes no data frames for them), so
		// this only keeps frame boundaries for the sake of completeness.
		c.unlock()
		runtime.Gosched()
		c.lock()
		if c.failErr != nil {
			return 0, c.failErr
		}
	}
	if c.outOfStep {
		return 0, errInjectUnsafe
	}
	written := 0
	for first := true; first || len(body) > 0; first = false {
		if !dl.IsZero() && !time.Now().Before(dl) {
			return written, os.ErrDeadlineExceeded
		}
		// Gather the frames of one link write.
		var nf, wire, bodies int
		for nf < maxBatchFrames && (first || len(body) > 0) {
			k := min(len(body), chunk-len(prefix))
			size := frameHeaderLen + len(prefix) + k
			if nf > 0 && wire+size > batchBufSize {
				break
			}
			f := &c.batch[nf]
			putDataHeader(f.hdr[:], id, len(prefix)+k)
			f.prefix, f.body = prefix, body[:k]
			nf++
			wire += size
			bodies += len(prefix) + k
			prefix, body, first = nil, body[k:], false
		}
		err := c.writeBatchLocked(nf, wire)
		for i := range nf {
			c.batch[i].prefix, c.batch[i].body = nil, nil
		}
		if err != nil {
			return written, err
		}
		c.dataOut.Add(uint64(bodies))
		written += bodies
	}
	return written, nil
}

// detaches reports whether a stream writer whose deadline is dl writes
// its frames with writeDetached: dl comes before the writes to the link
// would time out by themselves, and yamux is not between a header and
// its body (it never is for mux streams). The write lock must be held.
func (c *frameConn) detaches(dl time.Time) bool {
	return !dl.IsZero() && c.writeTimeout > 0 && time.Until(dl) < c.writeTimeout && !c.stashed && !c.outOfStep
}

// detachedWrite is a write to the link made by writeDetached; err is set
// before done is closed.
type detachedWrite struct {
	done chan struct{}
	err  error

	mu       sync.Mutex
	finished bool
	then     func() // see handOver
}

// handOver arranges for f to run once the write is over, and reports
// whether it will; false: it is over already, and f will not run.
func (d *detachedWrite) handOver(f func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished {
		return false
	}
	d.then = f
	return true
}

// writeDetached writes prefix and body for stream id as data frames of
// at most chunk body bytes each, like writeDataLocked, but from a
// goroutine of its own, to which the caller hands the write lock it
// holds: the goroutine writes them and then gives the lock back. The
// frames are copied first, so a writer whose deadline passes while they
// are still on their way to the link can return to its caller, and the
// frames are finished (bounded by WriteTimeout) without it: cutting the
// link write short instead would break the link (crypto/tls fails every
// write after a timed-out one), which on a busy but healthy link would
// turn a late Write into a lost session. It returns nil, the lock still
// held, if no goroutine may start (the session is closing).
func (c *frameConn) writeDetached(id uint32, prefix, body []byte, chunk int) *detachedWrite {
	c.detachMu.Lock()
	if c.detachClosed {
		c.detachMu.Unlock()
		return nil
	}
	c.detachWG.Add(1)
	c.detachMu.Unlock()
	bodies := len(prefix) + len(body)
	bp := batchPool.Get().(*[]byte)
	buf := (*bp)[:0]
	for first := true; first || len(body) > 0; first = false {
		k := min(len(body), chunk-len(prefix))
		var h [frameHeaderLen]byte
		putDataHeader(h[:], id, len(prefix)+k)
		buf = append(append(append(buf, h[:]...), prefix...), body[:k]...)
		prefix, body = nil, body[k:]
	}
	d := &detachedWrite{done: make(chan struct{})}
	go func() {
		defer c.detachWG.Done()
		_, err := c.linkWrite(buf)
		if err == nil {
			c.dataOut.Add(uint64(bodies))
		}
		if cap(buf) == cap(*bp) { // else it grew: drop it
			*bp = buf[:0]
		}
		batchPool.Put(bp)
		d.err = err
		d.mu.Lock()
		d.finished = true
		then := d.then
		d.mu.Unlock()
		if then != nil {
			then() // before the lock goes: the turns end with the write
		}
		c.unlock()
		close(d.done)
	}()
	return d
}

// waitDetached waits for the goroutines of writeDetached, and lets no
// more start. The link must have been closed (their writes then fail at
// once) or they wait for WriteTimeout.
func (c *frameConn) waitDetached() {
	c.detachMu.Lock()
	c.detachClosed = true
	c.detachMu.Unlock()
	c.detachWG.Wait()
}

// Link writes of data frames gather at most maxBatchFrames frames and
// batchBufSize bytes.
const (
	maxBatchFrames = 8
	batchBufSize   = 64 << 10
)

var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, batchBufSize)
	return &b
}}

// batchFrame is one data frame of a link write being gathered.
type batchFrame struct {
	hdr          [frameHeaderLen]byte
	prefix, body []byte
}

// writeBatchLocked writes the first nf frames of c.batch, wire bytes in
// all.
func (c *frameConn) writeBatchLocked(nf, wire int) error {
	if c.writev {
		c.iov = c.iovArr[:0]
		for i := range nf {
			f := &c.batch[i]
			c.iov = append(c.iov, f.hdr[:])
			if len(f.prefix) > 0 {
				c.iov = append(c.iov, f.prefix)
			}
			if len(f.body) > 0 {
				c.iov = append(c.iov, f.body)
			}
		}
		start := c.arm()
		n, err := c.iov.WriteTo(c.Conn)
		c.out.Add(uint64(n))
		c.totals.addOut(uint64(n))
		clear(c.iovArr[:]) // hold no caller's buffer
		if err != nil {
			return c.failLocked(err, start)
		}
		return nil
	}
	if nf == 1 && wire > batchBufSize {
		f := &c.batch[0]
		n := len(f.prefix) + len(f.body)
		if len(f.prefix) == 0 && !joinSaves(n) {
			if err := c.writeOut(f.hdr[:]); err != nil {
				return err
			}
			return c.writeOut(f.body)
		}
		bp := joinPool.Get().(*[]byte)
		buf := append(append((*bp)[:0], f.hdr[:]...), f.prefix...)
		k := min(len(f.body), joinBufSize-len(buf))
		buf = append(buf, f.body[:k]...)
		err := c.writeOut(buf)
		*bp = buf[:0]
		joinPool.Put(bp)
		if err == nil {
			err = c.writeOut(f.body[k:])
		}
		return err
	}
	pool := &joinPool
	if wire > joinBufSize {
		pool = &batchPool
	}
	bp := pool.Get().(*[]byte)
	buf := (*bp)[:0]
	for i := range nf {
		f := &c.batch[i]
		buf = append(append(append(buf, f.hdr[:]...), f.prefix...), f.body...)
	}
	err := c.writeOut(buf)
	*bp = buf[:0]
	pool.Put(bp)
	return err
}

// writeOut writes b to the link and counts it.
func (c *frameConn) writeOut(b []byte) error {
	_, err := c.linkWrite(b)
	return err
}

// putDataHeader encodes a data frame header without flags into h.
func putDataHeader(h []byte, id uint32, n int) {
	h[0], h[1] = frameVersion, typeData
	binary.BigEndian.PutUint16(h[2:4], 0)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], uint32(n))
}

// injectRST sends a reset for stream id with the code in the length field
// (window update frame, flag RST). If a data header is held back, the
// frame is queued to follow that header's body. The frame is either
// written or queued when injectRST returns.
func (c *frameConn) injectRST(id uint32, code ResetCode) error {
	return c.writeControl(rstFrame(id, code))
}

// writeControl writes f, a 12-byte frame of this side's (a reset or a
// ping answer), at the next frame boundary: if a data header of yamux's
// is held back, f follows that header's body. Once the link has failed it
// returns the failure.
func (c *frameConn) writeControl(f [frameHeaderLen]byte) error {
	if err := c.lockFor(nil, time.Time{}); err != nil {
		return err
	}
	defer c.unlock()
	if c.outOfStep {
		return errInjectUnsafe
	}
	if c.stashed {
		c.pending = append(c.pending, f)
		return nil
	}
	c.noteSent(f[:])
	_, err := c.writeRaw(f[:])
	return err
}
