package simulation

import (
	"net"
	"os"
	"sync"
	"time"
)

// minJitterHeld is the least a jitterConn holds before its writer waits
// (see jitterHeld).
const minJitterHeld = 256 << 10

// jitterHeld returns how many bytes a jitter line holds before its
// writer waits: twice what the link carries over the longest delay, so
// that the jitter never throttles the bottleneck, and at least 256 KiB
// (16 MiB without a bandwidth limit). Past it the far end has stopped
// reading, and the writer waits as at a closed TCP window.
func jitterHeld(spread time.Duration, bandwidth int64) int {
	if bandwidth == 0 {
		return 16 << 20
	}
	return max(minJitterHeld, int(min(2*float64(bandwidth)*spread.Seconds(), 1<<30)))
}

// jitterConn delays each packet (what one Write handed over) by its own
// share of the link's jitter, then writes it, whole and in order, to the
// raw conn: packet i is due at max(due of i−1, its write + d_i), d_i
// drawn in [0, spread] from the conn's seed and i, so that a run repeats.
// It sits under the faultnet bottleneck, whose delivery goroutine writes
// each packet here when it has crossed the link.
//
// Nothing here waits on the clock but the delivery goroutine's timer, as
// in faultnet.Link (see its pitfalls under testing/synctest): Write
// queues the packet and returns, waiting only when the far end has
// stopped reading; Close hands what is held to the raw conn at once, in
// the background, reading and dropping what arrives meanwhile, then
// closes it.
type jitterConn struct {
	net.Conn
	spread  time.Duration
	seed    uint64
	maxHeld int

	mu       sync.Mutex
	queue    []jitterPacket
	head     int
	held     int
	n        uint64    // packets queued so far
	lastDue  time.Time // due time of the last packet queued
	err      error     // the conn below failed a write: later writes fail
	closed   bool
	flushing bool    // closed with packets held: hand them over at once
	wdl      movable // write deadline: bounds a wait for room
	readers  int     // Reads inside the raw conn's Read

	wake     chan struct{} // a packet was queued
	space    chan struct{} // held went down
	closing  chan struct{} // closed by Close
	readIdle chan struct{} // after Close, the last Read has left the raw conn
	done     chan struct{} // closed when the delivery goroutine ends
}

type jitterPacket struct {
	buf []byte
	due time.Time
}

func newJitterConn(c net.Conn, spread time.Duration, bandwidth int64, seed uint64) *jitterConn {
	j := &jitterConn{
		Conn: c, spread: spread, seed: seed, maxHeld: jitterHeld(spread, bandwidth),
		wdl: newMovable(), wake: make(chan struct{}, 1), space: make(chan struct{}, 1),
		closing: make(chan struct{}), readIdle: make(chan struct{}, 1), done: make(chan struct{}),
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
		case j.held == 0 || j.held+len(p) <= j.maxHeld:
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
		dl := j.wdl
		j.mu.Unlock()
		if waitUntil(dl, j.space, j.closing) == expired {
			return 0, j.opError("write", os.ErrDeadlineExceeded)
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

// Close stops writes and reads. With nothing held it closes the raw
// conn and waits for the delivery goroutine; otherwise it returns at
// once, and the goroutine writes the held packets without waiting for
// their time (Close must not wait on the clock: see faultnet.Link.Wrap),
// then closes the raw conn, while another reads and drops what arrives,
// so that two ends closing at once over a net.Pipe do not wait for each
// other. A far end that neither reads nor closes is given up on after
// 5 s.
func (j *jitterConn) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return j.opError("close", net.ErrClosed)
	}
	j.closed = true
	pending := j.head < len(j.queue)
	j.flushing = pending
	if pending {
		_ = j.Conn.SetReadDeadline(time.Unix(1, 0)) // release a blocked Read
		_ = j.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	}
	close(j.closing)
	j.mu.Unlock()
	if pending {
		go j.discard()
		return nil
	}
	err := j.Conn.Close()
	<-j.done
	return err
}

// discard reads and drops what arrives during a flush, until the raw
// conn closes.
func (j *jitterConn) discard() {
	j.mu.Lock()
	for j.readers > 0 {
		j.mu.Unlock()
		<-j.readIdle
		j.mu.Lock()
	}
	j.mu.Unlock()
	// No Read is inside the raw conn now, and none will enter it.
	_ = j.Conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 16<<10)
	for {
		if _, err := j.Conn.Read(buf); err != nil {
			return
		}
	}
}

// Read reads from the raw conn, until Close.
func (j *jitterConn) Read(p []byte) (int, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, j.opError("read", net.ErrClosed)
	}
	j.readers++
	j.mu.Unlock()

	n, err := j.Conn.Read(p)

	j.mu.Lock()
	j.readers--
	closed := j.closed
	if closed && j.readers == 0 {
		signal(j.readIdle)
	}
	j.mu.Unlock()
	if closed && err != nil {
		err = j.opError("read", net.ErrClosed)
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

// SetWriteDeadline bounds a Write's wait for room; the raw conn is
// written by the delivery goroutine, without a deadline but Close's.
func (j *jitterConn) SetWriteDeadline(t time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return j.opError("set", net.ErrClosed)
	}
	j.wdl.set(t)
	return nil
}

// SetDeadline sets the read deadline below and the write deadline here.
func (j *jitterConn) SetDeadline(t time.Time) error {
	if err := j.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return j.SetWriteDeadline(t)
}
