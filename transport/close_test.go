package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// closeLimit is what Close of any link may take, whatever the remote does.
const closeLimit = time.Second

// stallAfter is how long a socket write must stay blocked for the test
// to take the link as stalled (its send buffer full). It only says when
// to call Close: were the write merely slow, the tests would still hold.
const stallAfter = 100 * time.Millisecond

// stallChunk is the size of each Write filling a stalled link: one batch
// (four full records), so once crypto/tls sends full records the socket
// write that blocks is the batch's flush, made after crypto/tls's Write
// returned, which tls.Conn.Close alone would wait 5 s on.
const stallChunk = 64 << 10

// stallTotal bounds what a writer sends to a remote that never reads:
// far more than socket buffers hold.
const stallTotal = 64 << 20

// watchedConn is a raw conn that, once armed, reports a write blocked in
// the socket for stallAfter, and keeps the last write it saw.
type watchedConn struct {
	net.Conn
	armed   atomic.Bool
	once    sync.Once
	stalled chan struct{} // closed by the first write blocked for stallAfter

	mu      sync.Mutex
	last    []byte // a copy of the last write's bytes (at most 64)
	lastErr error
}

func (c *watchedConn) Write(p []byte) (int, error) {
	if !c.armed.Load() {
		return c.Conn.Write(p)
	}
	timer := time.AfterFunc(stallAfter, func() { c.once.Do(func() { close(c.stalled) }) })
	n, err := c.Conn.Write(p)
	timer.Stop()
	c.mu.Lock()
	c.last = append(c.last[:0], p[:min(len(p), 64)]...)
	c.lastErr = err
	c.mu.Unlock()
	return n, err
}

func (c *watchedConn) lastWrite() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.last), c.lastErr
}

// testLink is a link between two fresh transports whose dialer's raw
// conn is watched.
type testLink struct {
	dialed, accepted Conn
	raw              *watchedConn // under dialed
}

// newTestLink makes a link of kind e ("tcp" or "memory"), both ends
// closed when the test ends. It takes a testing.TB for the benchmark.
func newTestLink(tb testing.TB, e string) *testLink {
	tb.Helper()
	var (
		mnet = NewMemoryNetwork()
		raws = make(chan *watchedConn, 1)
	)
	newTr := func(wrap func(net.Conn) net.Conn) (Transport, string, peer.ID) {
		id, err := peer.GenerateIdentity()
		if err != nil {
			tb.Fatal(err)
		}
		cfg := Config{Identity: id, Network: testNetwork, RawConnWrapper: wrap}
		if e == "tcp" {
			tr, err := NewTCP(cfg)
			if err != nil {
				tb.Fatal(err)
			}
			return tr, "127.0.0.1:0", id.ID()
		}
		tr, err := mnet.NewTransport(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		return tr, "", id.ID()
	}
	listener, addr, lid := newTr(nil)
	dialer, _, _ := newTr(func(c net.Conn) net.Conn {
		w := &watchedConn{Conn: c, stalled: make(chan struct{})}
		raws <- w
		return w
	})
	l, err := listener.Listen(addr)
	if err != nil {
		tb.Fatal(err)
	}
	accepted := make(chan Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		accepted <- c
		acceptErr <- err
	}()
	dc, err := dialer.Dial(dialCtx(tb), l.Addr().String(), lid)
	if err != nil {
		l.Close()
		<-accepted
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dc.Close() })
	ac := <-accepted
	if err := <-acceptErr; err != nil {
		l.Close()
		tb.Fatalf("accept: %v", err)
	}
	tb.Cleanup(func() { ac.Close() })
	l.Close()
	return &testLink{dialed: dc, accepted: ac, raw: <-raws}
}

// writeResult is how a writer filling a stalled link ended.
type writeResult struct {
	err   error
	at    time.Time
	bytes int64
}

// stall fills the link until a Write blocks in the socket (the remote
// never reads) and returns the writer's outcome, to come when Close
// releases it. It fails if the writer ends first.
func (l *testLink) stall(tb testing.TB) <-chan writeResult {
	tb.Helper()
	res := make(chan writeResult, 1)
	done := make(chan struct{})
	l.raw.armed.Store(true)
	go func() {
		defer close(done)
		buf := make([]byte, stallChunk)
		var total int64
		for total < stallTotal {
			n, err := l.dialed.Write(buf)
			total += int64(n)
			if err != nil {
				res <- writeResult{err, time.Now(), total}
				return
			}
		}
		res <- writeResult{nil, time.Now(), total}
	}()
	tb.Cleanup(func() {
		l.dialed.Close()
		<-done
	})
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case <-l.raw.stalled:
		return res
	case r := <-res:
		tb.Fatalf("writer ended before the link stalled: %d bytes, %v", r.bytes, r.err)
	case <-timer.C:
		tb.Fatalf("no write blocked within %v", waitLimit)
	}
	return nil
}

// checkReleased checks that a writer blocked on a link that was closed at
// start returned an error within closeLimit.
func checkReleased(t *testing.T, res <-chan writeResult, start time.Time) {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case r := <-res:
		if r.err == nil {
			t.Fatalf("Write of %d bytes to a remote that never reads succeeded", r.bytes)
		}
		if !errors.Is(r.err, net.ErrClosed) && !errors.Is(r.err, io.ErrClosedPipe) {
			t.Errorf("blocked Write: %v, want an error wrapping net.ErrClosed or io.ErrClosedPipe", r.err)
		}
		if d := r.at.Sub(start); d > closeLimit {
			t.Errorf("blocked Write returned %v after Close, want within %v", d, closeLimit)
		}
		t.Logf("blocked Write returned %v after Close began, after %d bytes: %v", r.at.Sub(start), r.bytes, r.err)
	case <-timer.C:
		t.Fatalf("blocked Write still blocked %v after Close", waitLimit)
	}
}

// Closing a link whose remote stopped reading, with a Write blocked on
// the full socket, takes a bounded time and fails the Write.
func TestCloseStalledLink(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		l := newTestLink(t, e.name())
		res := l.stall(t)

		start := time.Now()
		err := l.dialed.Close()
		took := time.Since(start)
		t.Logf("Close of a stalled %s link took %v (closeNotifyTimeout %v): %v", e.name(), took, closeNotifyTimeout, err)
		if took > closeLimit {
			t.Errorf("Close took %v, want at most %v", took, closeLimit)
		}
		checkReleased(t, res, start)
	})
}

// Several stalled links closed at once all close within the bound of one.
func TestCloseStalledLinksConcurrently(t *testing.T) {
	const links = 4
	forEachEnv(t, func(t *testing.T, e env) {
		ls := make([]*testLink, links)
		results := make([]<-chan writeResult, links)
		for i := range ls {
			ls[i] = newTestLink(t, e.name())
			results[i] = ls[i].stall(t)
		}
		took := make([]time.Duration, links)
		start := time.Now()
		var wg sync.WaitGroup
		for i, l := range ls {
			wg.Go(func() {
				_ = l.dialed.Close()
				took[i] = time.Since(start)
			})
		}
		wg.Wait()
		total := time.Since(start)
		t.Logf("closing %d stalled %s links at once took %v (each %v)", links, e.name(), total, took)
		if total > closeLimit {
			t.Errorf("closing %d stalled links took %v, want at most %v", links, total, closeLimit)
		}
		for _, res := range results {
			checkReleased(t, res, start)
		}
	})
}

// Closing a healthy link sends close_notify (TCP) and the remote reads
// what was written, then a clean EOF.
func TestCloseHealthyLinkCleanEOF(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		l := newTestLink(t, e.name())
		type readResult struct {
			data []byte
			err  error
		}
		read := make(chan readResult, 1)
		_ = l.accepted.SetReadDeadline(time.Now().Add(waitLimit))
		go func() {
			data, err := io.ReadAll(l.accepted) // nil at io.EOF
			read <- readResult{data, err}
		}()
		const msg = "last words before a clean close"
		if _, err := l.dialed.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		l.raw.armed.Store(true)
		start := time.Now()
		if err := l.dialed.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close of a healthy %s link took %v", e.name(), time.Since(start))

		if r := <-read; r.err != nil || string(r.data) != msg {
			t.Fatalf("remote read %q, %v; want %q then EOF", r.data, r.err, msg)
		}
		if e.name() != "tcp" {
			return
		}
		// The last write to the socket, by Close, was the encrypted
		// close_notify alert: an application_data record (TLS 1.3 hides
		// the type) of 2 alert bytes, 1 inner type byte and a 16-byte
		// tag. Nothing else here writes a record that short.
		last, err := l.raw.lastWrite()
		want := []byte{23, 3, 3, 0, 19}
		if err != nil || len(last) != len(want)+19 || !bytes.Equal(last[:len(want)], want) {
			t.Errorf("last socket write % x (%v), want the close_notify record (% x and 19 bytes)", last, err, want)
		}
	})
}

// Close races Writes of every size and other Closes on a link whose
// remote reads: all return within the bound (and the race detector
// watches).
func TestCloseConcurrentWithWrites(t *testing.T) {
	sizes := []int{100, minBatchWrite + 1, 64 << 10, 300 << 10}
	forEachEnv(t, func(t *testing.T, e env) {
		for range 5 {
			l := newTestLink(t, e.name())
			var reader sync.WaitGroup
			reader.Go(func() { _, _ = io.Copy(io.Discard, l.accepted) })

			var wg sync.WaitGroup
			started := make(chan struct{}, len(sizes))
			for _, size := range sizes {
				wg.Go(func() {
					buf := make([]byte, size)
					for i := 0; ; i++ {
						_, err := l.dialed.Write(buf)
						if i == 0 {
							started <- struct{}{}
						}
						if err != nil {
							return
						}
					}
				})
			}
			timer := time.NewTimer(waitLimit)
			for range sizes {
				select {
				case <-started:
				case <-timer.C:
					t.Fatalf("writers not under way within %v", waitLimit)
				}
			}
			timer.Stop()
			start := time.Now()
			for range 3 {
				wg.Go(func() { _ = l.dialed.Close() })
			}
			wg.Wait() // the writers end on the closed link
			if d := time.Since(start); d > closeLimit {
				t.Errorf("Close with concurrent Writes took %v, want at most %v", d, closeLimit)
			}
			l.accepted.Close()
			reader.Wait()
		}
	})
}

// BenchmarkCloseStalled measures Close of a TCP link whose remote stopped
// reading, with a Write blocked on the full socket.
func BenchmarkCloseStalled(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		l := newTestLink(b, "tcp")
		res := l.stall(b)
		b.StartTimer()
		_ = l.dialed.Close()
		b.StopTimer()
		<-res
		l.accepted.Close()
		b.StartTimer()
	}
}

// Once closing, the batcher clamps write deadlines to its bound, and a
// write made while a batch is open (close_notify racing a Write) goes out
// at once, after what the batch gathered.
func TestBatcherClosing(t *testing.T) {
	local, remote := net.Pipe()
	defer remote.Close()
	b := &recordBatcher{Conn: local}
	defer b.Close()

	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 6)
		_, err := io.ReadFull(remote, buf)
		if err != nil {
			t.Error(err)
		}
		got <- buf
	}()
	b.begin()
	if _, err := b.Write([]byte("aaa")); err != nil {
		t.Fatal(err)
	}
	b.startClose()
	if _, err := b.Write([]byte("bbb")); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "aaabbb" {
		t.Fatalf("socket got %q, want the batch then the write: %q", s, "aaabbb")
	}
	if err := b.flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}

	// Nobody reads now: a write waits for its deadline, clamped to
	// closeNotifyTimeout from startClose.
	for _, dl := range []time.Time{{}, time.Now().Add(time.Hour)} {
		if err := b.SetWriteDeadline(dl); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := b.Write([]byte("c"))
		if !isTimeout(err) {
			t.Fatalf("write with deadline %v: %v, want a timeout", dl, err)
		}
		if d := time.Since(start); d > closeLimit {
			t.Errorf("write with deadline %v took %v, want at most %v", dl, d, closeLimit)
		}
	}
}
