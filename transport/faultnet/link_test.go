package faultnet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/transport/faultnet"
)

// transfer writes total bytes through l over a net.Pipe in writes of
// size bytes while the far end reads, and returns when the last byte
// arrived, measured from the first Write.
func transfer(t *testing.T, l faultnet.Link, total, size int) time.Duration {
	a, b := net.Pipe()
	w := l.Wrap(a)
	defer w.Close()
	defer b.Close()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for sent := 0; sent < total; sent += size {
			if _, err := w.Write(buf[:min(size, total-sent)]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if _, err := io.CopyN(io.Discard, b, int64(total)); err != nil {
		t.Fatalf("read: %v", err)
	}
	took := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return took
}

func within(t *testing.T, what string, got, want time.Duration, tol float64) {
	t.Helper()
	if d := float64(got-want) / float64(want); d < -tol || d > tol {
		t.Errorf("%s took %v, want %v ± %.0f%%", what, got, want, tol*100)
	}
}

// Throughput is Bandwidth whatever the write size and the queue (in
// virtual time, exactly: the bottleneck never idles while a writer keeps
// it fed), and the last byte comes Latency after it departed.
func TestLinkThroughput(t *testing.T) {
	for _, tc := range []struct {
		link        faultnet.Link
		total, size int
	}{
		{faultnet.Link{Bandwidth: 20e6}, 10e6, 32 << 10},
		{faultnet.Link{Bandwidth: 20e6, Latency: 50 * time.Millisecond}, 10e6, 32 << 10},
		{faultnet.Link{Bandwidth: 20e6, Latency: 50 * time.Millisecond}, 10e6, 1000},
		{faultnet.Link{Bandwidth: 20e6, Latency: 50 * time.Millisecond}, 10e6, 256 << 10}, // writes > Buffer
		{faultnet.Link{Bandwidth: 1e6, Latency: 10 * time.Millisecond, Buffer: 4 << 10}, 1e6, 16 << 10},
		{faultnet.Link{Bandwidth: 125e6, Latency: time.Millisecond, Buffer: 1 << 20}, 50e6, 64 << 10},
	} {
		name := fmt.Sprintf("%dB/s_%v_buf%d_write%d", tc.link.Bandwidth, tc.link.Latency, tc.link.Buffer, tc.size)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				took := transfer(t, tc.link, tc.total, tc.size)
				serial := time.Duration(float64(tc.total) / float64(tc.link.Bandwidth) * float64(time.Second))
				within(t, "transfer", took, serial+tc.link.Latency, 0.01)
				t.Logf("%d bytes: %v (ideal %v + %v), %.4f MB/s", tc.total, took, serial, tc.link.Latency,
					float64(tc.total)/(took-tc.link.Latency).Seconds()/1e6)
			})
		})
	}
}

// On the real clock the shaper is as good as the scheduler lets it be;
// the bound is loose, the figure is logged.
func TestLinkThroughputRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	l := faultnet.Link{Bandwidth: 20e6, Latency: 10 * time.Millisecond}
	took := transfer(t, l, 4e6, 32<<10)
	within(t, "real-time transfer", took, 200*time.Millisecond+l.Latency, 0.10)
	t.Logf("4 MB at 20 MB/s + 10 ms on the real clock: %v (ideal 210ms)", took)
}

// Latency is added once per byte, and Write does not wait for it.
func TestLinkLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat = 50 * time.Millisecond
		a, b := net.Pipe()
		w := faultnet.Link{Latency: lat}.Wrap(a)
		defer w.Close()
		defer b.Close()
		start := time.Now()
		for i := range 10 {
			if _, err := w.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("10 writes took %v of virtual time; latency must not block the writer", d)
		}
		buf := make([]byte, 1)
		for i := range 10 {
			if _, err := io.ReadFull(b, buf); err != nil || buf[0] != byte(i) {
				t.Fatalf("byte %d: %v %v", i, buf, err)
			}
			if d := time.Since(start); d != lat {
				t.Fatalf("byte %d arrived after %v, want %v", i, d, lat)
			}
		}

		// Later writes: their own Latency, nothing else.
		time.Sleep(time.Second)
		sent := time.Now()
		go w.Write([]byte("x"))
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(sent); d != lat {
			t.Fatalf("arrived after %v, want %v", d, lat)
		}
	})
}

// With a bandwidth, a packet arrives when its last byte does: its
// serialization time plus Latency.
func TestLinkSerialization(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		w := faultnet.Link{Latency: 20 * time.Millisecond, Bandwidth: 1000}.Wrap(a)
		defer w.Close()
		defer b.Close()
		start := time.Now()
		go func() {
			w.Write(make([]byte, 100)) // departs at 100 ms
			w.Write(make([]byte, 50))  // queued behind it: departs at 150 ms
		}()
		buf := make([]byte, 150)
		if _, err := io.ReadFull(b, buf[:100]); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 120*time.Millisecond {
			t.Errorf("first packet after %v, want 120ms", d)
		}
		if _, err := io.ReadFull(b, buf[:50]); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 170*time.Millisecond {
			t.Errorf("second packet after %v, want 170ms", d)
		}
	})
}

// Every Write arrives whole and in order, whatever the writers do with
// their buffers afterwards.
func TestLinkConcurrentWriters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const writers, msgs = 8, 200
		a, b := net.Pipe()
		w := faultnet.Link{Latency: 5 * time.Millisecond, Bandwidth: 10e6, Buffer: 16 << 10}.Wrap(a)
		defer b.Close()
		var wg sync.WaitGroup
		for id := range writers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(id), 1))
				buf := make([]byte, 12+20000)
				for seq := range msgs {
					n := 1 + r.IntN(20000)
					body := buf[12 : 12+n]
					for i := range body {
						body[i] = byte(r.Uint32())
					}
					binary.BigEndian.PutUint16(buf[0:], uint16(id))
					binary.BigEndian.PutUint16(buf[2:], uint16(seq))
					binary.BigEndian.PutUint32(buf[4:], uint32(n))
					binary.BigEndian.PutUint32(buf[8:], crc32.ChecksumIEEE(body))
					if _, err := w.Write(buf[:12+n]); err != nil {
						t.Errorf("writer %d: %v", id, err)
						return
					}
					clear(buf) // the link must have copied it
				}
			})
		}
		next := make([]int, writers)
		hdr := make([]byte, 12)
		body := make([]byte, 20000)
		for range writers * msgs {
			if _, err := io.ReadFull(b, hdr); err != nil {
				t.Fatal(err)
			}
			id, seq := binary.BigEndian.Uint16(hdr), int(binary.BigEndian.Uint16(hdr[2:]))
			n, sum := binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint32(hdr[8:])
			if int(id) >= writers || seq != next[id] || n == 0 || n > 20000 {
				t.Fatalf("header %x: writer %d seq %d len %d (want seq %d): interleaved or reordered", hdr, id, seq, n, next[min(int(id), writers-1)])
			}
			next[id]++
			if _, err := io.ReadFull(b, body[:n]); err != nil {
				t.Fatal(err)
			}
			if crc32.ChecksumIEEE(body[:n]) != sum {
				t.Fatalf("writer %d message %d corrupted", id, seq)
			}
		}
		wg.Wait()
		w.Close()
	})
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// Write returns once the bytes not yet departed fit in Buffer; a write
// deadline bounds that wait, set before the Write or while it waits.
func TestLinkWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		w := faultnet.Link{Bandwidth: 1000, Buffer: 1000}.Wrap(a)
		defer w.Close()
		defer b.Close()
		go io.Copy(io.Discard, b)
		start := time.Now()
		if _, err := w.Write(make([]byte, 1000)); err != nil || time.Since(start) != 0 {
			t.Fatalf("write into an empty queue: %v after %v", err, time.Since(start))
		}
		if _, err := w.Write(make([]byte, 500)); err != nil || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("write into a full queue: %v after %v, want 500ms (1500 bytes queued, 1000 fit)", err, time.Since(start))
		}

		start = time.Now()
		w.SetWriteDeadline(start.Add(100 * time.Millisecond))
		n, err := w.Write(make([]byte, 1000)) // fits after 1 s
		if !isTimeoutErr(err) || n != 1000 || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("write = %d, %v after %v; want 1000 (queued), a timeout, after 100ms", n, err, time.Since(start))
		}
		if n, err := w.Write([]byte("x")); !isTimeoutErr(err) || n != 0 {
			t.Fatalf("write past the deadline = %d, %v", n, err)
		}

		// Deadline moved while the Write waits.
		w.SetWriteDeadline(time.Time{})
		go func() {
			time.Sleep(50 * time.Millisecond)
			w.SetWriteDeadline(time.Now())
		}()
		start = time.Now()
		if _, err := w.Write(make([]byte, 1000)); !isTimeoutErr(err) || time.Since(start) != 50*time.Millisecond {
			t.Fatalf("write = %v after %v, want a timeout after 50ms", err, time.Since(start))
		}

		// Cleared: the write waits until its bytes fit.
		w.SetWriteDeadline(time.Time{})
		start = time.Now()
		if _, err := w.Write(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		// 3501 bytes queued since 0 at 1000 B/s: they fit in Buffer at
		// 2.501s, and it is 0.65s.
		if d := time.Since(start); d != 1851*time.Millisecond {
			t.Errorf("write waited %v, want 1.851s", d)
		}
	})
}

// A reader that stops reading stops the writer (like a closed window),
// once the link's capacity and queue are full, and resumes it.
func TestLinkBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := faultnet.Link{Latency: 10 * time.Millisecond, Bandwidth: 1e6, Buffer: 4000}
		a, b := net.Pipe()
		w := l.Wrap(a)
		defer w.Close()
		defer b.Close()
		var written atomic.Int64
		writer := func() <-chan error {
			ended := make(chan error, 1)
			go func() {
				for {
					if _, err := w.Write(make([]byte, 1000)); err != nil {
						ended <- err
						return
					}
					written.Add(1000)
				}
			}()
			return ended
		}
		ended := writer()
		time.Sleep(time.Second)
		// 256 KiB overdue, 10 kB in flight (Bandwidth×Latency), 4 kB
		// queued, and the last write's 1 kB.
		if want := int64(256<<10 + 10000 + 4000 + 1000); written.Load() < want-1000 || written.Load() > want+1000 {
			t.Fatalf("writer got %d bytes through to a reader that does not read, want ≈ %d", written.Load(), want)
		}
		t.Logf("a stalled reader stops the writer after %d bytes", written.Load())

		// A deadline bounds the wait for the far end, writing nothing.
		w.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		if err := <-ended; !isTimeoutErr(err) {
			t.Fatalf("blocked writer: %v, want a timeout", err)
		}
		if n, err := w.Write([]byte("x")); n != 0 || !isTimeoutErr(err) {
			t.Fatalf("write to a stalled far end past its deadline = %d, %v", n, err)
		}
		w.SetWriteDeadline(time.Time{})

		before := written.Load()
		ended = writer()
		go io.Copy(io.Discard, b)
		time.Sleep(time.Second)
		if got := written.Load() - before; got < 0.99e6 || got > 1.01e6 {
			t.Fatalf("reading again: %d bytes written in a second at 1 MB/s", got)
		}
		w.Close()
		<-ended
	})
}

// Close: later Reads and Writes fail with net.ErrClosed, blocked ones are
// released, and what was written before still arrives.
func TestLinkClose(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			w := faultnet.Link{Latency: time.Millisecond, Bandwidth: 1000, Buffer: 10}.Wrap(a)
			readErr := make(chan error, 1)
			go func() {
				_, err := w.Read(make([]byte, 1))
				readErr <- err
			}()
			synctest.Wait()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-readErr; !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked read after Close = %v", err)
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after Close = %v", err)
			}
			if _, err := w.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after Close = %v", err)
			}
			if err := w.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close = %v", err)
			}
			if _, err := b.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("far end read = %v, want EOF", err)
			}
		})
	})
	t.Run("blocked writers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			w := faultnet.Link{Bandwidth: 1000, Buffer: 10}.Wrap(a)
			w.Write(make([]byte, 10))
			type result struct {
				n   int
				err error
			}
			queued, waiting := make(chan result, 1), make(chan result, 1)
			go func() {
				n, err := w.Write(make([]byte, 10)) // queued, waits for the queue to drain
				queued <- result{n, err}
			}()
			synctest.Wait()
			go func() {
				n, err := w.Write(make([]byte, 10)) // waits for its turn
				waiting <- result{n, err}
			}()
			synctest.Wait()
			w.Close()
			if r := <-queued; r.n != 10 || r.err != nil {
				t.Errorf("queued write after Close = %d, %v; want it written (and flushed)", r.n, r.err)
			}
			if r := <-waiting; r.n != 0 || !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("waiting write after Close = %d, %v", r.n, r.err)
			}
			if got, err := io.ReadAll(b); len(got) != 20 || err != nil {
				t.Errorf("far end got %d bytes, %v; want the 20 queued", len(got), err)
			}
		})
	})
	t.Run("flushes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			w := faultnet.Link{Latency: 50 * time.Millisecond}.Wrap(a)
			readErr := make(chan error, 1)
			go func() {
				_, err := w.Read(make([]byte, 1)) // blocked in the pipe at Close
				readErr <- err
			}()
			w.Write([]byte("last words"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-readErr; !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked read after Close = %v", err)
			}
			got, err := io.ReadAll(b)
			if string(got) != "last words" || err != nil {
				t.Errorf("far end read %q, %v", got, err)
			}
		})
	})
	t.Run("both ends at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Each end has bytes to flush and nobody reads: the ends
			// must not wait for each other (the bubble would deadlock).
			l := faultnet.Link{Latency: 50 * time.Millisecond}
			a, b := net.Pipe()
			wa, wb := l.Wrap(a), l.Wrap(b)
			wa.Write([]byte("bye from a"))
			wb.Write([]byte("bye from b"))
			wa.Close()
			wb.Close()
		})
	})
	t.Run("no leak", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		l := faultnet.Link{Latency: 5 * time.Millisecond, Bandwidth: 10e6}
		a, b := net.Pipe()
		wa, wb := l.Wrap(a), l.Wrap(b)
		go io.Copy(io.Discard, wb)
		for range 100 {
			wa.Write(make([]byte, 10000))
		}
		wa.Close()
		wb.Close()
	})
}

func TestLinkWrapZero(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if faultnet.ShapeRaw(faultnet.Link{Buffer: 5})(a) != a {
		t.Error("a Link with neither latency nor bandwidth wrapped the conn")
	}
	defer func() {
		if recover() == nil {
			t.Error("negative latency did not panic")
		}
	}()
	faultnet.Link{Latency: -1}.Wrap(a)
}

// yamux over shaped pipes in a bubble: streams work at the link's pace,
// and sessions closing at both ends at once do not freeze the clock
// (yamux closes its conn under a mutex its receive loop then waits on).
func TestLinkYamux(t *testing.T) {
	runtime.GC() // empty yamux's timer pool around the bubble
	runtime.GC()
	defer runtime.GC()
	synctest.Test(t, func(t *testing.T) {
		l := faultnet.Link{Latency: 25 * time.Millisecond, Bandwidth: 10e6}
		a, b := net.Pipe()
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		client, err := yamux.Client(l.Wrap(a), cfg)
		if err != nil {
			t.Fatal(err)
		}
		server, err := yamux.Server(l.Wrap(b), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				s, err := server.AcceptStream()
				if err != nil {
					return
				}
				wg.Go(func() {
					io.Copy(s, s)
					s.Close()
				})
			}
		})
		s, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		msg := bytes.Repeat([]byte("peerlink"), 1<<15) // 256 KiB: one window
		start := time.Now()
		go s.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo: %v", err)
		}
		// Two serializations of 256 KiB plus headers at 10 MB/s, and
		// a round trip; plus the round trip of the window update.
		t.Logf("256 KiB echo over 10 MB/s, 50 ms RTT: %v", time.Since(start))
		if d := time.Since(start); d < 100*time.Millisecond || d > 250*time.Millisecond {
			t.Errorf("echo took %v", d)
		}
		var closers sync.WaitGroup
		closers.Go(func() { client.Close() })
		closers.Go(func() { server.Close() })
		closers.Wait()
		wg.Wait()
	})
}

// Jitter: each packet arrives Latency plus its own draw in [0, Jitter]
// after its Write, in order, and a seed repeats its delays.
func TestJitter(t *testing.T) {
	delays := func(seed uint64) []time.Duration {
		var out []time.Duration
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			w := faultnet.Link{Latency: 10 * time.Millisecond, Jitter: 20 * time.Millisecond, JitterSeed: seed}.Wrap(a)
			defer w.Close()
			sent := make([]time.Time, 50)
			go func() {
				for i := range sent {
					sent[i] = time.Now()
					if _, err := w.Write([]byte{byte(i)}); err != nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			buf := make([]byte, 1)
			for i := range sent {
				if _, err := io.ReadFull(b, buf); err != nil {
					t.Fatal(err)
				}
				if int(buf[0]) != i {
					t.Fatalf("packet %d arrived as %d-th: out of order", buf[0], i)
				}
				d := time.Since(sent[i])
				if d < 10*time.Millisecond || d > 30*time.Millisecond {
					t.Fatalf("packet %d delayed %v, want 10 ms to 30 ms", i, d)
				}
				out = append(out, d)
			}
		})
		return out
	}
	one, again, other := delays(7), delays(7), delays(8)
	if fmt.Sprint(one) != fmt.Sprint(again) {
		t.Fatalf("one seed, two delay sequences:\n%v\n%v", one, again)
	}
	if fmt.Sprint(one) == fmt.Sprint(other) {
		t.Fatal("two seeds, one delay sequence")
	}
	spread := false
	for _, d := range one {
		spread = spread || d != one[0]
	}
	if !spread {
		t.Fatalf("no jitter: every packet delayed %v", one[0])
	}
}
