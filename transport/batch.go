package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tlsRecordLen is the most plaintext crypto/tls puts in one record.
const tlsRecordLen = 16 << 10

// minBatchWrite is the largest write that always fits one record, even
// while crypto/tls sizes records to a TCP segment (~1.2 KB, on a new or
// idle link: its dynamic record sizing); larger writes are gathered.
const minBatchWrite = 1024

// maxBatch bounds the bytes a recordBatcher gathers before it writes them
// out, so that one large Write does not buffer without limit.
const maxBatch = 64<<10 + 4*64 // four full records with their overhead

var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, maxBatch)
	return &b
}}

// recordBatcher sits between crypto/tls and the socket. crypto/tls seals
// a large Write into records of at most 16 KiB and writes each with its
// own call to the socket: five system calls for one 64 KiB yamux frame.
// While a batch is open, the batcher gathers those records and writes
// them with one call when the batch is flushed (or maxBatch fills).
// Outside a batch (handshake, alerts, close_notify) writes go straight
// through. mu keeps every write in order, batched or not: TLS records
// reordered on the wire would fail authentication.
//
// During the handshake it also times a round trip (see stopProbe).
//
// It also bounds Close (see startClose): once the link is closing, no
// write deadline reaches the socket later than closeNotifyTimeout after
// Close began.
type recordBatcher struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      *[]byte // from batchPool while a batch holds data
	err      error   // a failed write while batching; reported by flush

	// dlMu orders the write deadlines given to the socket, so that none
	// set concurrently with startClose outlives closeBy. It is never held
	// across I/O: startClose must get it while a write blocks holding mu.
	dlMu    sync.Mutex
	closeBy time.Time   // set once, by startClose; zero until then
	closing atomic.Bool // closeBy is set

	// The handshake's round-trip probe: the handshake goroutine alone
	// reads and writes these until stopProbe.
	probing        bool
	sent, answered time.Time // our first write; the first bytes read after it
}

// Read reads from the conn, noting for the probe when the first answer to
// our first write arrived.
func (b *recordBatcher) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if b.probing && n > 0 && b.answered.IsZero() && !b.sent.IsZero() {
		b.answered = time.Now()
	}
	return n, err
}

// stopProbe ends the probe and returns the round trip it saw: from our
// first write to the first bytes read after it, 0 if there was none. It
// is called by the handshake goroutine before the conn is shared.
func (b *recordBatcher) stopProbe() time.Duration {
	b.probing = false
	if b.sent.IsZero() || b.answered.IsZero() {
		return 0
	}
	return b.answered.Sub(b.sent)
}

func (b *recordBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing && b.sent.IsZero() {
		b.sent = time.Now()
	}
	if !b.batching {
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closing.Load() {
		// Close is sending close_notify while a batch is open: write
		// what the batch gathered, then the alert, in order, now. Left
		// in the batch they would wait for a flush that comes after
		// the socket is closed, and the remote would see a truncated
		// stream.
		if b.buf != nil && len(*b.buf) > 0 {
			if b.err = b.writeOut(); b.err != nil {
				return 0, b.err
			}
		}
		n, err := b.Conn.Write(p)
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.buf == nil {
		b.buf = batchPool.Get().(*[]byte)
	}
	if len(*b.buf)+len(p) > maxBatch && len(*b.buf) > 0 {
		if b.err = b.writeOut(); b.err != nil {
			return 0, b.err
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// begin opens a batch.
func (b *recordBatcher) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// flush writes what the batch gathered and closes it.
func (b *recordBatcher) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	err := b.err
	b.err = nil
	if b.buf != nil {
		if err == nil && len(*b.buf) > 0 { // empty if a closing write took it
			err = b.writeOut()
		}
		*b.buf = (*b.buf)[:0]
		batchPool.Put(b.buf)
		b.buf = nil
	}
	return err
}

// writeOut writes the gathered bytes; b.mu must be held.
func (b *recordBatcher) writeOut() error {
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// startClose bounds every write to the socket, from now on, to end within
// closeNotifyTimeout: it sets that write deadline on the socket, which
// fails a write blocked there (with mu held) when it passes, and later
// write deadlines are clamped to it (crypto/tls gives close_notify 5 s).
// Only the first call counts.
func (b *recordBatcher) startClose() {
	b.dlMu.Lock()
	defer b.dlMu.Unlock()
	if b.closing.Load() {
		return
	}
	b.closeBy = time.Now().Add(closeNotifyTimeout)
	b.closing.Store(true)
	_ = b.Conn.SetWriteDeadline(b.closeBy)
}

// SetWriteDeadline sets the socket's write deadline; once the link is
// closing, no later than closeBy.
func (b *recordBatcher) SetWriteDeadline(t time.Time) error {
	b.dlMu.Lock()
	defer b.dlMu.Unlock()
	if b.closing.Load() && (t.IsZero() || t.After(b.closeBy)) {
		t = b.closeBy
	}
	return b.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, the write one as SetWriteDeadline does.
func (b *recordBatcher) SetDeadline(t time.Time) error {
	if err := b.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return b.SetWriteDeadline(t)
}
