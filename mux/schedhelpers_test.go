package mux

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// inBubble runs f in a synctest bubble. yamux keeps a global pool of
// timers, and a timer from one bubble used in another (or outside) is
// fatal, so the pool is emptied before and after (two GCs empty a
// sync.Pool); after in a defer, for synctest.Test ends a failed test with
// FailNow.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	runtime.GC()
	runtime.GC()
	defer func() {
		runtime.GC()
		runtime.GC()
	}()
	synctest.Test(t, f)
}

// slowConn is one end of a link of bw bytes per second: each Write takes
// len/bw (in a bubble, of virtual time) before its bytes go to the other
// end, whole, so yamux never reads a frame header before its body.
type slowConn struct {
	net.Conn
	bw int64
}

func (c *slowConn) Write(b []byte) (int, error) {
	time.Sleep(time.Duration(int64(len(b)) * int64(time.Second) / c.bw))
	return c.Conn.Write(b)
}

// chunkTime is how long a full default chunk takes on a link of bw.
func chunkTime(bw int64) time.Duration {
	return time.Duration(int64(DefaultChunkSize) * int64(time.Second) / bw)
}

// wireFrame is a data frame seen arriving, in order.
type wireFrame struct {
	id  uint32
	len uint32
}

// wireLog records the data frames read from a link (by the receiving
// session), in the order they arrive.
type wireLog struct {
	net.Conn
	mu     sync.Mutex
	frames []wireFrame
	want   int           // notify when len(frames) reaches it
	notify chan struct{} // closed then
	hdr    [frameHeaderLen]byte
	n      int
	skip   uint32
}

func (c *wireLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.feed(p[:n])
	return n, err
}

func (c *wireLog) feed(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(uint32(len(p)), c.skip)
			c.skip -= k
			p = p[k:]
			continue
		}
		k := copy(c.hdr[c.n:], p)
		c.n += k
		p = p[k:]
		if c.n < frameHeaderLen {
			continue
		}
		c.n = 0
		if c.hdr[1] != typeData {
			continue
		}
		l := binary.BigEndian.Uint32(c.hdr[8:12])
		c.skip = l
		if l > 0 {
			c.frames = append(c.frames, wireFrame{binary.BigEndian.Uint32(c.hdr[4:8]), l})
			if c.notify != nil && len(c.frames) >= c.want {
				close(c.notify)
				c.notify = nil
			}
		}
	}
}

// reached returns a channel closed once n data frames have arrived.
func (c *wireLog) reached(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if len(c.frames) >= n {
		close(ch)
		return ch
	}
	c.want, c.notify = n, ch
	return ch
}

func (c *wireLog) snapshot() []wireFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireFrame(nil), c.frames...)
}

func (c *wireLog) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// sinkHandler reads its stream to the end.
func sinkHandler(s *Stream) { io.Copy(io.Discard, s) }

// fakeRemoteStream opens a stream on a session (configured by cfg) over a
// link from pair whose far end is fakeRemote, giving window back: so the
// allocations counted while it runs are the sender's alone. Both end with
// the test.
func fakeRemoteStream(t testing.TB, pair func(testing.TB) (net.Conn, net.Conn), cfg Config) (*Session, *Stream) {
	t.Helper()
	cc, sc := pair(t)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		fakeRemote(sc, &got, true)
		close(done)
	}()
	s, err := NewSession(cc, testPeer(t, 1), testPeer(t, 2), true, cfg, nil)
	if err != nil {
		sc.Close()
		<-done
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		sc.Close()
		<-done
	})
	st, err := s.OpenStream(context.Background(), "x", PriorityNormal)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// fakeRemote is the far end of a session's link speaking just enough
// yamux for a client to send on its streams: it acknowledges each SYN,
// discards data frames and, if credit is set, gives their window back as
// yamux would (once half of it is used), all without allocating or
// buffering, so that allocations and memory counted while it runs are the
// sender's. Without credit it is a remote whose application has stopped
// reading every stream. It returns when c fails.
func fakeRemote(c net.Conn, got *atomic.Int64, credit bool) {
	var hdr, out [frameHeaderLen]byte
	buf := make([]byte, 64<<10)
	used := map[uint32]uint32{}
	reply := func(flags uint16, id, delta uint32) error {
		out[0], out[1] = frameVersion, typeWindowUpdate
		binary.BigEndian.PutUint16(out[2:4], flags)
		binary.BigEndian.PutUint32(out[4:8], id)
		binary.BigEndian.PutUint32(out[8:12], delta)
		_, err := c.Write(out[:])
		return err
	}
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		flags := binary.BigEndian.Uint16(hdr[2:4])
		id := binary.BigEndian.Uint32(hdr[4:8])
		l := binary.BigEndian.Uint32(hdr[8:12])
		switch hdr[1] {
		case typeWindowUpdate:
			if flags&flagSYN != 0 {
				used[id] = 0
				if reply(flagACK, id, 0) != nil {
					return
				}
			}
		case typeData:
			for rest := l; rest > 0; {
				n, err := c.Read(buf[:min(rest, uint32(len(buf)))])
				rest -= uint32(n)
				if err != nil {
					return
				}
			}
			got.Add(int64(l))
			used[id] += l
			if u := used[id]; credit && u >= DefaultStreamWindow/2 {
				used[id] = 0
				if reply(0, id, u) != nil {
					return
				}
			}
		}
	}
}
