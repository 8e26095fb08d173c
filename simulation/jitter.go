package simulation

import (
	"net"
	"os"
	"sync"
	"time"
)

// maxJitterHeld bounds the bytes a jitterConn holds back; a writer past
// it waits, as at a full socket buffer. The bottleneck below holds the
// link's real queue; this one only needs room for what the jitter delays.
const maxJitterHeld = 4 << 20

// jitterConn delays each write (one packet) by its own share of the
// link's jitter before handing it, whole and in order, to the conn below
// (the faultnet shapers): packet i is due at max(due of i−1, its write +
// d_i), d_i drawn in [0, spread] from the conn's seed and i, so that a
// run repeats. Write never waits on the clock (a synctest bubble would
// freeze or allow one write per delay): it queues the packet and a
// delivery goroutine waits on a timer, as faultnet does. Reads pass
// through.
type jitterConn struct {
	net.Conn
	spread time.Duration
	seed   uint64

	mu       sync.Mutex
	queue    []jitterPacket
	head     int
	held     int
	n        uint64    // packets queued so far
	lastDue  time.Time // due time of the last packet queued
	err      error     // the conn below failed a write: later writes fail
	closed   bool
	flushing bool          // closed with packets held: hand them over at once
	wdl      time.Time     // write deadline: bounds a wait for room
	wdlSet   chan struct{} // closed and replaced when wdl changes

	wake    chan struct{} // a packet was queued
	space   chan struct{} // held went down
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the delivery goroutine ends
}

type jitterPacket struct {
	buf []byte
	due time.Time
}

func newJitterConn(c net.Conn, spread time.Duration, seed uint64) *jitterConn {
	j := &jitterConn{
		Conn: c, spread: spread, seed: seed,
		wdlSet: make(chan struct{}), wake: make(chan struct{}, 1), space: make(chan struct{}, 1),
		closing: make(chan struct{}), done: make(chan struct{}),
	}
	go j.deliver()
	return j
}

func (j *jitterConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "memory", Source: j.LocalAddr(), Addr: j.RemoteAddr(), Err: err}
}

// Write queues a copy of p, to be handed on once its delay has passed.
func (j *jitterConn) Write(p []byte) (int, error) {
	for {
		j.mu.Lock()
		switch {
		case j.closed:
			j.mu.Unlock()
			return 0, j.opError("write", net.ErrClosed)
		case j.err != nil:
			err := j.err
			j.mu.Unlock()
			return 0, err
		case len(p) == 0:
			j.mu.Unlock()
			return 0, nil
		case j.held == 0 || j.held+len(p) <= maxJitterHeld:
			now := time.Now()
			due := now.Add(time.Duration(mix(j.seed^j.n) % uint64(j.spread+1)))
			if due.Before(j.lastDue) {
				due = j.lastDue // packets keep their order
			}
			j.n++
			j.lastDue = due
			j.queue = append(j.queue, jitterPacket{buf: append([]byte(nil), p...), due: due})
			j.held += len(p)
			j.mu.Unlock()
			signal(j.wake)
			return len(p), nil
		}
		dl, changed := j.wdl, j.wdlSet
		j.mu.Unlock()
		var expire <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			t = time.NewTimer(time.Until(dl))
			expire = t.C
		}
		select {
		case <-j.space:
		case <-j.closing:
		case <-changed:
		case <-expire:
			return 0, j.opError("write", os.ErrDeadlineExceeded)
		}
		if t != nil {
			t.Stop()
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deliver hands each packet to the conn below when it is due.
func (j *jitterConn) deliver() {
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		j.mu.Lock()
		for j.head == len(j.queue) {
			if j.closed {
				flushing := j.flushing
				j.mu.Unlock()
				if flushing {
					_ = j.Conn.Close()
				}
				return
			}
			j.mu.Unlock()
			select {
			case <-j.wake:
			case <-j.closing:
			}
			j.mu.Lock()
		}
		p := j.queue[j.head]
		flushing := j.flushing
		j.mu.Unlock()
		if d := time.Until(p.due); d > 0 && !flushing {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-j.closing: // closed: hand over the rest at once
				timer.Stop()
			}
		}
		_, err := j.Conn.Write(p.buf)
		j.mu.Lock()
		j.queue[j.head] = jitterPacket{}
		j.head++
		j.held -= len(p.buf)
		if err != nil && j.err == nil {
			j.err = err
			clear(j.queue[j.head:])
			j.head, j.held = len(j.queue), 0
		}
		if j.head == len(j.queue) {
			j.queue, j.head = j.queue[:0], 0
		}
		j.mu.Unlock()
		signal(j.space)
	}
}

// Close stops writes and reads. With nothing held it closes the conn
// below and waits for the delivery goroutine; otherwise it returns at
// once and the goroutine hands the held packets over without waiting
// for their time (Close must not wait on the clock, see faultnet.Link),
// then closes the conn below.
func (j *jitterConn) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return j.opError("close", net.ErrClosed)
	}
	j.closed = true
	pending := j.head < len(j.queue)
	j.flushing = pending
	close(j.closing)
	j.mu.Unlock()
	if pending {
		// Release a Read blocked below; later ones fail here. The conn
		// below stays open for the flush, and its own Close then reads
		// and drops what still arrives (faultnet's linger).
		_ = j.Conn.SetReadDeadline(time.Unix(1, 0))
		return nil
	}
	err := j.Conn.Close()
	<-j.done
	return err
}

// Read reads from the conn below, until Close.
func (j *jitterConn) Read(p []byte) (int, error) {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return 0, j.opError("read", net.ErrClosed)
	}
	n, err := j.Conn.Read(p)
	if err != nil {
		j.mu.Lock()
		closed = j.closed
		j.mu.Unlock()
		if closed {
			return n, j.opError("read", net.ErrClosed)
		}
	}
	return n, err
}

// SetReadDeadline sets the read deadline of the conn below.
func (j *jitterConn) SetReadDeadline(t time.Time) error {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return j.opError("set", net.ErrClosed)
	}
	return j.Conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds a Write's wait for room; the conn below is
// written by the delivery goroutine, without a deadline.
func (j *jitterConn) SetWriteDeadline(t time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return j.opError("set", net.ErrClosed)
	}
	j.wdl = t
	close(j.wdlSet)
	j.wdlSet = make(chan struct{})
	return nil
}

// SetDeadline sets the read deadline below and the write deadline here.
func (j *jitterConn) SetDeadline(t time.Time) error {
	if err := j.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return j.SetWriteDeadline(t)
}
