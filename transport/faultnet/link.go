package faultnet

import (
	"math"
	"math/bits"
	"net"
	"os"
	"sort"
	"sync"
	"time"
)

// DefaultBuffer is the least bottleneck queue of a Link whose Buffer is
// 0: such a Link queues max(DefaultBuffer, DefaultBufferTime ×
// Bandwidth).
//
// That is small on purpose, not one bandwidth-delay product: the shaper
// never drops a packet (Write blocks instead), so its queue only has to
// keep the bottleneck busy until the writer comes back with its next
// write; the "buffer = BDP" rule of thumb is for loss-based TCP
// congestion control, which is not modelled here. A larger queue only
// adds queueing delay, up to Buffer/Bandwidth (3.3 ms at 20 MB/s with
// 64 KiB; 50 ms at 100 MB/s if it were the BDP of a 50 ms link), and that
// delay is what priority schemes above the link contend with; set Buffer
// to model a bloated router.
//
// In virtual time any queue keeps the bottleneck busy. On the real clock
// timers fire late (by a few hundred µs, up to about a millisecond), and
// the queue must not run dry meanwhile: measured over net.Pipe with
// 64 KiB writes, a 64 KiB queue keeps 50 MB/s within 0.3 % but loses
// 14 % at 100 MB/s, where 256 KiB (2.6 ms) is within 0.3 %; hence the
// 2 ms of bandwidth.
const DefaultBuffer = 64 << 10

// DefaultBufferTime is how much of its bandwidth a Link whose Buffer is 0
// queues at least; see DefaultBuffer.
const DefaultBufferTime = 2 * time.Millisecond

// minStallWindow is the least a far end that stops reading can make a
// Link hold for it (see Link: overdue bytes).
const minStallWindow = 256 << 10

// unlimitedHeld bounds the bytes a Link without a bandwidth limit holds
// for delivery: without a bottleneck nothing else bounds what is in
// flight.
const unlimitedHeld = 16 << 20

// lingerTimeout bounds how long a closed conn keeps trying to hand its
// last bytes to a far end that neither reads nor closes.
const lingerTimeout = 5 * time.Second

// Link shapes one direction of a connection like a network path: a
// bottleneck of Bandwidth bytes per second with a queue of Buffer bytes,
// then Latency of propagation.
//
// A packet (what one Write handed over) of n bytes starts serializing
// when the bottleneck is free, max(now, previous departure), departs n /
// Bandwidth later, and arrives at the underlying conn Latency after that,
// whole and in order. Write copies the bytes, queues the packet at once
// and returns as soon as the bytes not yet departed fit in Buffer, as a
// blocking socket write returns when its last byte is in the buffer: a
// full bottleneck blocks the writer, latency never does. Concurrent
// Writes queue one after the other, each once the previous returned. A
// write deadline that passes while Write waits for the queue to drain
// returns len(p) with the timeout error: the packet is queued and will
// be sent.
//
// Write also blocks when the far end stops reading, as a closed TCP
// window would: while more than max(Buffer, 256 KiB) bytes are overdue
// (due, but not yet taken by the underlying conn). With Bandwidth 0 there
// is no bottleneck: every packet arrives Latency after its Write, and
// Write blocks while 16 MiB are held for delivery (so with Latency L such
// a link carries at most 16 MiB per L).
//
// The zero Link shapes nothing.
type Link struct {
	// Latency is the one-way delay added to every byte.
	Latency time.Duration
	// Bandwidth is the bottleneck's rate in bytes per second; 0 means
	// unlimited.
	Bandwidth int64
	// Buffer is how many bytes the bottleneck queues (not yet departed)
	// before Write blocks, like a router's or NIC's queue; 0 means
	// max(DefaultBuffer, DefaultBufferTime × Bandwidth).
	Buffer int
	// Jitter delays each packet by a further 0 to Jitter, its own draw
	// from JitterSeed and its number on the conn (so a seeded run
	// repeats), without overtaking the packet before it: packets arrive
	// in order, as on one TCP connection.
	Jitter     time.Duration
	JitterSeed uint64
}

// ShapeRaw returns l.Wrap, to plug into transport.Config.RawConnWrapper:
// every raw connection of the transport, dialed or accepted, then has its
// write direction shaped under the security handshake. A link is shaped
// both ways when the transports at both ends use it.
func ShapeRaw(l Link) func(net.Conn) net.Conn { return l.Wrap }

// Wrap returns c with its write direction shaped by l; reads pass
// through (each end of a link wraps its own conn, so a link shaped both
// ways is both ends wrapping). The zero Link returns c itself. Wrap
// panics if a field is negative.
//
// The returned conn runs one delivery goroutine, which waits on a timer
// until each packet is due and writes it to c. Everything it blocks on
// is a timer or a channel, so it runs on the fake clock of a
// testing/synctest bubble when c is a net.Pipe; call Wrap inside the
// bubble.
//
// SetWriteDeadline bounds Write (the wait for room at the bottleneck);
// it is not passed to c, whose writes the delivery goroutine makes.
// SetReadDeadline is passed to c.
//
// Close makes later reads and writes fail with an error wrapping
// net.ErrClosed and releases blocked ones. If nothing is waiting for
// delivery it closes c and waits for the delivery goroutine to end.
// Otherwise the bytes already written are not lost, as a kernel still
// sends a closed socket's buffer: Close returns at once, and the
// goroutine hands them to c at once, in order and whole, then closes c
// and ends; meanwhile whatever arrives on c is read and discarded, so
// two ends closing at once over a net.Pipe do not wait for each other,
// and a far end that neither reads nor closes is given up on after 5 s.
// Those last bytes arrive early, by what remained of their delay: Close
// never waits on the clock, because in a synctest bubble that would
// freeze (yamux closes its conn while holding a mutex its receive loop
// then blocks on, and a goroutine blocked on a mutex stops the fake
// clock) or deadlock (the clock stops when the bubble's function
// returns, and with it any delivery still due).
func (l Link) Wrap(c net.Conn) net.Conn {
	switch {
	case l.Latency < 0:
		panic("faultnet: Link.Latency is negative")
	case l.Bandwidth < 0:
		panic("faultnet: Link.Bandwidth is negative")
	case l.Buffer < 0:
		panic("faultnet: Link.Buffer is negative")
	case l.Jitter < 0:
		panic("faultnet: Link.Jitter is negative")
	}
	if l.Latency == 0 && l.Bandwidth == 0 && l.Jitter == 0 {
		return c
	}
	if l.Buffer == 0 {
		l.Buffer = DefaultBuffer
		if b := float64(l.Bandwidth) * DefaultBufferTime.Seconds(); b > DefaultBuffer {
			l.Buffer = int(min(b, math.MaxInt32))
		}
	}
	s := &shapedConn{
		Conn:        c,
		link:        l,
		stallWindow: int64(max(l.Buffer, minStallWindow)),
		sem:         make(chan struct{}, 1),
		wdl:         makeDeadline(),
		timer:       stoppedTimer(),
		wake:        make(chan struct{}, 1),
		space:       make(chan struct{}, 1),
		readIdle:    make(chan struct{}, 1),
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
	}
	go s.deliver()
	return s
}

// packet is what one Write handed over.
type packet struct {
	buf *[]byte
	due time.Time
	end int64 // bytes queued since Wrap, this packet included
}

type shapedConn struct {
	net.Conn
	link        Link  // Buffer filled in
	stallWindow int64 // overdue bytes beyond which Write blocks

	sem   chan struct{} // holds the one Write admitted to the bottleneck
	wdl   deadline      // write deadline
	timer *time.Timer   // the admitted Write's wait for room

	mu        sync.Mutex
	queue     []packet // waiting for delivery, from head on, due times non-decreasing
	head      int
	held      int64     // bytes in queue
	queued    int64     // bytes queued since Wrap
	delivered int64     // bytes delivered (or dropped) since Wrap
	busyUntil time.Time // when the bottleneck will have sent everything queued
	carry     int64     // serialization time's remainder, in byte·ns, below Bandwidth
	packets   uint64    // packets queued since Wrap (Jitter's draws)
	lastDue   time.Time // the last packet's due time
	err       error     // the underlying conn's write error, returned by later Writes
	closed    bool
	flushing  bool // closed with packets queued: deliver them at once, then close Conn
	readers   int  // Reads inside Conn.Read

	wake     chan struct{} // a packet was queued (to the delivery goroutine)
	space    chan struct{} // held bytes went down (to the waiting Write)
	readIdle chan struct{} // after Close, the last Read has left Conn.Read
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed when the delivery goroutine ends
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *shapedConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "faultnet", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Write queues a copy of p as one packet; see Link.
func (c *shapedConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		c.mu.Lock()
		closed, err := c.closed, c.err
		c.mu.Unlock()
		if closed {
			return 0, c.opError("write", net.ErrClosed)
		}
		return 0, err
	}
	deadline := c.wdl.wait()
	if isClosedChan(deadline) {
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}
	select {
	case c.sem <- struct{}{}:
	case <-c.closing:
		return 0, c.opError("write", net.ErrClosed)
	case <-deadline:
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}
	defer func() { <-c.sem }()

	buf := getBuf(len(p))
	copy(*buf, p)
	n := int64(len(p))

	// Queue the packet once the far end keeps up...
	var wait time.Duration
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			putBuf(buf)
			return 0, c.opError("write", net.ErrClosed)
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			putBuf(buf)
			return 0, err
		}
		now := time.Now()
		if !c.stalled(now, n) {
			c.enqueue(now, buf)
			wait = c.drainIn(now)
			c.mu.Unlock()
			signal(c.wake)
			break
		}
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-c.closing:
		case <-deadline:
			putBuf(buf)
			return 0, c.opError("write", os.ErrDeadlineExceeded)
		}
	}
	// ...then return once the bytes not yet departed fit in Buffer. The
	// packet is queued: whatever ends the wait, it will be sent (a Close
	// flushes it), so all of p counts as written.
	for wait > 0 {
		c.timer.Reset(wait)
		select {
		case <-c.timer.C:
		case <-c.closing:
			c.timer.Stop()
			return len(p), nil
		case <-deadline:
			c.timer.Stop()
			return len(p), c.opError("write", os.ErrDeadlineExceeded)
		}
		c.mu.Lock()
		wait = c.drainIn(time.Now())
		c.mu.Unlock()
	}
	return len(p), nil
}

// drainIn returns how long until the bytes not yet departed fit in
// Buffer; c.mu is held. The bottleneck drains its queue continuously: at
// now it holds (busyUntil - now) × Bandwidth bytes.
func (c *shapedConn) drainIn(now time.Time) time.Duration {
	if c.link.Bandwidth == 0 {
		return 0
	}
	return c.busyUntil.Sub(now) - durationOf(int64(c.link.Buffer), c.link.Bandwidth)
}

// stalled reports whether the far end is too far behind for n more
// bytes; c.mu is held.
func (c *shapedConn) stalled(now time.Time, n int64) bool {
	if c.held == 0 {
		return false
	}
	if c.link.Bandwidth == 0 && c.held+n > unlimitedHeld {
		return true
	}
	// Due times rise along the queue: find the last packet due by now.
	q := c.queue[c.head:]
	k := sort.Search(len(q), func(i int) bool { return q[i].due.After(now) })
	return k > 0 && q[k-1].end-c.delivered > c.stallWindow
}

// durationOf returns how long n bytes take at bw bytes per second.
func durationOf(n, bw int64) time.Duration {
	hi, lo := bits.Mul64(uint64(n), uint64(time.Second))
	if hi >= uint64(bw) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(bw))
	return time.Duration(min(q, math.MaxInt64))
}

// enqueue stamps buf's packet and queues it; c.mu is held.
func (c *shapedConn) enqueue(now time.Time, buf *[]byte) {
	n := int64(len(*buf))
	if c.busyUntil.Before(now) {
		c.busyUntil = now
		c.carry = 0
	}
	if bw := c.link.Bandwidth; bw > 0 {
		// n/bw seconds, the remainder carried to the next packet so
		// that many small packets add up exactly.
		hi, lo := bits.Mul64(uint64(n), uint64(time.Second))
		lo, cy := bits.Add64(lo, uint64(c.carry), 0)
		hi += cy
		if hi >= uint64(bw) { // absurdly long: pin it
			c.busyUntil = c.busyUntil.Add(math.MaxInt64 / 4)
			c.carry = 0
		} else {
			q, r := bits.Div64(hi, lo, uint64(bw))
			c.busyUntil = c.busyUntil.Add(time.Duration(q))
			c.carry = int64(r)
		}
	}
	c.queued += n
	due := c.busyUntil.Add(c.link.Latency)
	if j := c.link.Jitter; j > 0 {
		due = due.Add(time.Duration(mix64(c.link.JitterSeed^c.packets) % uint64(j+1)))
		due = maxTime(due, c.lastDue) // packets keep their order
	}
	c.packets++
	c.lastDue = due
	c.queue = append(c.queue, packet{buf: buf, due: due, end: c.queued})
	c.held += n
}

// deliver is the delivery goroutine: it writes each packet to the
// underlying conn when due, in order.
func (c *shapedConn) deliver() {
	defer close(c.done)
	timer := stoppedTimer()
	for {
		c.mu.Lock()
		for c.head == len(c.queue) {
			if c.closed {
				flushing := c.flushing
				c.mu.Unlock()
				if flushing {
					c.Conn.Close()
				}
				return
			}
			c.mu.Unlock()
			select {
			case <-c.wake:
			case <-c.closing:
			}
			c.mu.Lock()
		}
		p := c.queue[c.head]
		flushing := c.flushing
		c.mu.Unlock()

		if d := time.Until(p.due); d > 0 && !flushing {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-c.closing: // flush what is left at once
				timer.Stop()
			}
		}
		_, err := c.Conn.Write(*p.buf)
		n := int64(len(*p.buf))
		putBuf(p.buf)

		c.mu.Lock()
		c.queue[c.head] = packet{}
		c.head++
		c.held -= n
		c.delivered += n
		if err != nil && c.err == nil {
			c.err = err
			for _, q := range c.queue[c.head:] {
				putBuf(q.buf)
			}
			c.head = len(c.queue)
			c.held = 0
			c.delivered = c.queued
		}
		switch {
		case c.head == len(c.queue):
			c.queue = c.queue[:0]
			c.head = 0
		case c.head >= 256 && 2*c.head >= len(c.queue):
			// Under steady load the queue never empties: move the
			// live part down rather than grow the slice forever.
			k := copy(c.queue, c.queue[c.head:])
			clear(c.queue[k:])
			c.queue = c.queue[:k]
			c.head = 0
		}
		c.mu.Unlock()
		signal(c.space)
	}
}

// Read reads from the underlying conn.
func (c *shapedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, c.opError("read", net.ErrClosed)
	}
	c.readers++
	c.mu.Unlock()

	n, err := c.Conn.Read(p)

	c.mu.Lock()
	c.readers--
	closed := c.closed
	if closed && c.readers == 0 {
		signal(c.readIdle)
	}
	c.mu.Unlock()
	if closed && err != nil {
		err = c.opError("read", net.ErrClosed)
	}
	return n, err
}

// Close closes the conn; see Link.Wrap.
func (c *shapedConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	pending := c.head < len(c.queue)
	if !pending {
		close(c.closing)
		c.mu.Unlock()
		err := c.Conn.Close()
		<-c.done
		return err
	}
	c.flushing = true
	// The underlying conn stays open for the flush: make blocked Reads
	// return, and give the flush a bound.
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	_ = c.Conn.SetWriteDeadline(time.Now().Add(lingerTimeout))
	close(c.closing)
	c.mu.Unlock()
	go c.discard()
	return nil
}

// discard reads and drops what arrives after a Close that left packets
// to flush, until the underlying conn is closed (by the flush's end or
// by the far end).
func (c *shapedConn) discard() {
	c.mu.Lock()
	for c.readers > 0 {
		c.mu.Unlock()
		<-c.readIdle
		c.mu.Lock()
	}
	c.mu.Unlock()
	// No Read is inside Conn.Read now, and none will enter it.
	_ = c.Conn.SetReadDeadline(time.Time{})
	buf := getBuf(16 << 10)
	defer putBuf(buf)
	for {
		if _, err := c.Conn.Read(*buf); err != nil {
			return
		}
	}
}

// SetDeadline sets the read deadline of the underlying conn and the
// write deadline of Write.
func (c *shapedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the underlying conn's read deadline.
func (c *shapedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opError("set", net.ErrClosed)
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds Write's wait for room at the bottleneck.
func (c *shapedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return c.opError("set", net.ErrClosed)
	}
	c.wdl.set(t)
	return nil
}

// deadline is a resettable deadline whose passing closes a channel (as
// in net.Pipe): a Write selects on it.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its close
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Packet buffers come from pools by power-of-two size class, 512 B to
// 4 MiB; larger ones are allocated.
const (
	minPoolShift = 9
	maxPoolShift = 22
)

var bufPools [maxPoolShift - minPoolShift + 1]sync.Pool

func getBuf(n int) *[]byte {
	shift := max(bits.Len(uint(n-1)), minPoolShift)
	if shift > maxPoolShift {
		b := make([]byte, n)
		return &b
	}
	if v := bufPools[shift-minPoolShift].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<shift)
	return &b
}

func putBuf(b *[]byte) {
	c := cap(*b)
	shift := bits.Len(uint(c)) - 1
	if c != 1<<shift || shift < minPoolShift || shift > maxPoolShift {
		return
	}
	*b = (*b)[:0]
	bufPools[shift-minPoolShift].Put(b)
}

// mix64 is a splitmix64 step: Jitter's draw for one packet.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func maxTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
