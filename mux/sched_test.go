package mux

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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
)

// fullChunk is the payload of a full chunk at the default ChunkSize.
const fullChunk = DefaultChunkSize - frameHeaderLen

// slowPair starts a session pair whose client writes over a link of bw
// bytes per second and whose server records the data frames it reads.
// The server serves "sink" (reads to the end) and whatever hs adds.
func slowPair(t *testing.T, bw int64, ccfg Config, hs map[string]Handler) (pair, *wireLog) {
	t.Helper()
	cc, sc := net.Pipe()
	log := &wireLog{Conn: sc}
	routes := map[string]Handler{"sink": sinkHandler}
	for k, h := range hs {
		routes[k] = h
	}
	p := newPair(t, &slowConn{Conn: cc, bw: bw}, log, ccfg, testConfig(), nil, routeOf(routes))
	return p, log
}

// saturate opens a stream at prio and writes bufs of size to it until the
// write fails (the session closes); the stream is returned at once. The
// stream header goes first, alone, so that every chunk of the writes is
// cut the same way.
func saturate(t *testing.T, s *Session, prio Priority, size int, wg *sync.WaitGroup) *Stream {
	t.Helper()
	st, err := s.OpenStream(context.Background(), "sink", prio)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(nil); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		buf := make([]byte, size)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	})
	return st
}

// TestSchedulerShares: two streams at each priority saturate a slow
// link. Once all are going, every 150 chunks on the wire are critical,
// high, normal and low in the ratio of the weights, 8:4:2:1, within one
// chunk: 80, 40, 20 and 10.
func TestSchedulerShares(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		p, log := slowPair(t, 10<<20, testConfig(), nil)
		prios := map[uint32]Priority{}
		var wg sync.WaitGroup
		for _, prio := range []Priority{PriorityLow, PriorityNormal, PriorityHigh, PriorityCritical} {
			for range 2 {
				// Writes of whole chunks, so that every chunk is full
				// and counts the same.
				st := saturate(t, p.client, prio, 4*fullChunk, &wg)
				prios[st.ID()] = prio
			}
		}
		const warm, window = 64, 150
		<-log.reached(warm + 2*window)
		frames := log.snapshot()
		for _, off := range []int{warm, warm + window} {
			var got [NumPriorities]int
			for _, f := range frames[off : off+window] {
				if f.len != fullChunk {
					t.Errorf("frame of %d bytes in steady state", f.len)
				}
				got[prios[f.id]]++
			}
			t.Logf("chunks %d..%d: low %d, normal %d, high %d, critical %d", off, off+window, got[0], got[1], got[2], got[3])
			want := [NumPriorities]int{10, 20, 40, 80}
			for i := range got {
				if d := got[i] - want[i]; d < -1 || d > 1 {
					t.Errorf("%v: %d chunks of %d, want %d±1", Priority(i), got[i], window, want[i])
				}
			}
		}
		p.client.Close()
		wg.Wait()
	})
}

// TestCriticalLatency: a critical write on a link saturated by low
// streams goes out after at most MaxInFlightChunks of their chunks, so
// it arrives no later than on an idle link plus that many chunk times.
func TestCriticalLatency(t *testing.T) {
	for _, inflight := range []int{1, 2} {
		t.Run(fmt.Sprintf("inflight=%d", inflight), func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				const bw = 10 << 20
				arrived := make(chan time.Time, 1)
				cfg := testConfig()
				cfg.MaxInFlightChunks = inflight
				p, log := slowPair(t, bw, cfg, map[string]Handler{
					"vote": func(s *Stream) {
						b := make([]byte, 1024)
						for {
							if _, err := io.ReadFull(s, b); err != nil {
								return
							}
							arrived <- time.Now()
						}
					},
				})
				vote, err := p.client.OpenStream(context.Background(), "vote", PriorityCritical)
				if err != nil {
					t.Fatal(err)
				}
				send := func() (time.Duration, int) {
					synctest.Wait() // everything is blocked: the link is mid-chunk if busy
					before := log.len()
					t0 := time.Now()
					if _, err := vote.Write(make([]byte, 1024)); err != nil {
						t.Fatal(err)
					}
					lat := (<-arrived).Sub(t0)
					// Data frames that arrived after the write started and
					// before the vote's frame.
					ahead := 0
					for _, f := range log.snapshot()[before:] {
						if f.id == vote.ID() {
							break
						}
						ahead++
					}
					return lat, ahead
				}
				idle, _ := send()
				var wg sync.WaitGroup
				for range 3 {
					saturate(t, p.client, PriorityLow, 4*fullChunk, &wg)
				}
				<-log.reached(log.len() + 20)
				var worst time.Duration
				for range 5 {
					busy, ahead := send()
					t.Logf("vote latency: idle %v, busy %v with %d low chunks ahead (chunk time %v)", idle, busy, ahead, chunkTime(bw))
					if ahead > inflight {
						t.Errorf("%d low chunks went ahead of the vote, want <= %d", ahead, inflight)
					}
					worst = max(worst, busy)
				}
				if bound := idle + time.Duration(inflight)*chunkTime(bw) + time.Millisecond; worst > bound {
					t.Errorf("busy vote latency %v, want <= %v", worst, bound)
				}
				p.client.Close()
				wg.Wait()
			})
		})
	}
}

// TestNoStarvation: critical streams saturate the link; a low stream
// still finishes its transfer, at about its weight's share.
func TestNoStarvation(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		const bw = 10 << 20
		p, _ := slowPair(t, bw, testConfig(), nil)
		var wg sync.WaitGroup
		for range 3 {
			saturate(t, p.client, PriorityCritical, 4*fullChunk, &wg)
		}
		time.Sleep(50 * time.Millisecond) // let them saturate the link (virtual time)
		low, err := p.client.OpenStream(context.Background(), "sink", PriorityLow)
		if err != nil {
			t.Fatal(err)
		}
		const size = 1 << 20
		t0 := time.Now()
		if _, err := low.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		// Weight 1 against 8: 1/9 of the link.
		share := float64(size) / d.Seconds() / bw
		t.Logf("low stream: 1 MiB in %v of virtual time, %.3f of the link (weights give %.3f)", d, share, 1.0/9)
		if share < 0.8/9 || share > 1.2/9 {
			t.Errorf("low stream got %.3f of the link, want about 1/9", share)
		}
		p.client.Close()
		wg.Wait()
	})
}

// TestWindowStallDoesNotBlock: a low stream whose reader has stopped
// uses up its window and waits for window without holding a turn; a
// critical stream on the same session completes meanwhile. The stalled
// Write then fails on Reset, returning the bytes it had written.
func TestWindowStallDoesNotBlock(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			cc, sc := l.pair(t)
			hold := make(chan struct{})
			defer close(hold)
			for _, inflight := range []int{1} {
				cfg := testConfig()
				cfg.MaxInFlightChunks = inflight
				p := newPair(t, cc, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{
					"stuck": func(s *Stream) { <-hold }, // never reads
					"sink":  sinkHandler,
				}))
				stuck, err := p.client.OpenStream(context.Background(), "stuck", PriorityLow)
				if err != nil {
					t.Fatal(err)
				}
				type res struct {
					n   int
					err error
				}
				stalled := make(chan res, 1)
				go func() {
					n, err := stuck.Write(make([]byte, 4<<20))
					stalled <- res{n, err}
				}()
				waitFor(t, 10*time.Second, "the stuck stream to use its window", func() bool {
					p.client.sched.mu.Lock()
					defer p.client.sched.mu.Unlock()
					return stuck.fl.state == flowParked
				})
				crit, err := p.client.OpenStream(context.Background(), "sink", PriorityCritical)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := crit.Write(make([]byte, 4<<20)); err != nil {
					t.Fatal(err)
				}
				crit.Close()
				select {
				case r := <-stalled:
					t.Fatalf("stalled write returned %d, %v", r.n, r.err)
				default:
				}
				if qs := p.client.QueueStats(); qs[PriorityLow].Depth != 1 || qs[PriorityCritical].Depth != 0 {
					t.Errorf("queue stats %+v", qs)
				}
				stuck.Reset()
				r := <-stalled
				if !errors.Is(r.err, ErrStreamReset) {
					t.Errorf("stalled write: %v, want ErrStreamReset", r.err)
				}
				// All of the window went, less the header that shared it.
				if want := DefaultStreamWindow - len(stuck.hdr); r.n != want {
					t.Errorf("stalled write returned n=%d, want %d (the window's worth)", r.n, want)
				}
			}
		})
	}
}

// countConn sits under a session's frame conn and checks, at every write
// to the link, that the bytes the scheduler has granted turns for and the
// frame conn has not yet written are at most MaxInFlightChunks chunks.
type countConn struct {
	net.Conn
	sess  atomic.Pointer[Session]
	worst atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	if s := c.sess.Load(); s != nil {
		inflight := int64(s.sched.handed.Load() - s.fc.dataOut.Load())
		for {
			w := c.worst.Load()
			if inflight <= w || c.worst.CompareAndSwap(w, inflight) {
				break
			}
		}
	}
	return c.Conn.Write(b)
}

func TestInFlightBound(t *testing.T) {
	for _, inflight := range []int{1, 2, 3} {
		for _, l := range links {
			t.Run(fmt.Sprintf("%s/inflight=%d", l.name, inflight), func(t *testing.T) {
				cc, sc := l.pair(t)
				cnt := &countConn{Conn: cc}
				cfg := testConfig()
				cfg.MaxInFlightChunks = inflight
				p := newPair(t, cnt, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{"sink": sinkHandler}))
				cnt.sess.Store(p.client)
				var wg sync.WaitGroup
				for i := range 8 {
					st, err := p.client.OpenStream(context.Background(), "sink", Priority(i%4))
					if err != nil {
						t.Fatal(err)
					}
					wg.Go(func() {
						buf := make([]byte, 100_000+i*7919)
						for range 20 {
							if _, err := st.Write(buf); err != nil {
								t.Error(err)
								return
							}
						}
						st.Close()
					})
				}
				wg.Wait()
				bound := int64(inflight * DefaultChunkSize)
				t.Logf("most bytes granted and not yet written: %d (bound %d)", cnt.worst.Load(), bound)
				if w := cnt.worst.Load(); w > bound || w <= 0 {
					t.Errorf("%d bytes in flight, want 1..%d", w, bound)
				}
			})
		}
	}
}

// TestWriteWaitBounded: the write deadline and WriteContext's context
// bound a Write waiting for a turn (link busy) or for window (reader
// stopped); the error says why, and n counts what went before.
func TestWriteWaitBounded(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		const bw = 1 << 20 // 16 KiB take ~16 ms
		cfg := testConfig()
		cfg.MaxInFlightChunks = 1
		hold := make(chan struct{})
		p, _ := slowPair(t, bw, cfg, map[string]Handler{"stuck": func(*Stream) { <-hold }})
		defer close(hold)
		var wg sync.WaitGroup
		// Three bulk critical streams: a low write gets one turn in 25.
		for range 3 {
			saturate(t, p.client, PriorityCritical, 4*fullChunk, &wg)
		}
		time.Sleep(100 * time.Millisecond)

		low, err := p.client.OpenStream(context.Background(), "sink", PriorityLow)
		if err != nil {
			t.Fatal(err)
		}
		low.Write(nil) // the header, so that the chunks below are whole
		low.SetWriteDeadline(time.Now().Add(5 * time.Millisecond))
		n, err := low.Write(make([]byte, 3*fullChunk))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write past its deadline: %d, %v", n, err)
		}
		if n != 0 {
			t.Errorf("n = %d, want 0 (no turn came)", n)
		}
		// Long enough for some chunks, not for all.
		low.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err = low.Write(make([]byte, 64*fullChunk))
		if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n%fullChunk != 0 {
			t.Errorf("partial write: %d, %v; want some whole chunks and a timeout", n, err)
		}
		low.SetWriteDeadline(time.Time{})

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		n, err = low.WriteContext(ctx, make([]byte, 3*fullChunk))
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) || n != 0 {
			t.Errorf("WriteContext past its deadline: %d, %v", n, err)
		}
		ctx, cancelCause := context.WithCancelCause(context.Background())
		go func() {
			time.Sleep(5 * time.Millisecond)
			cancelCause(errors.New("vote superseded"))
		}()
		_, err = low.WriteContext(ctx, make([]byte, 3*fullChunk))
		if !errors.Is(err, context.Canceled) || err.Error() != "mux: write: context canceled: vote superseded" {
			t.Errorf("WriteContext cancelled: %v", err)
		}
		if _, err := low.WriteContext(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("WriteContext with a done context: %v", err)
		}

		// Waiting for window: the remote does not read.
		stuck, err := p.client.OpenStream(context.Background(), "stuck", PriorityCritical)
		if err != nil {
			t.Fatal(err)
		}
		stuck.SetWriteDeadline(time.Now().Add(10 * time.Second))
		n, err = stuck.Write(make([]byte, 1<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) || n != DefaultStreamWindow-len(stuck.hdr) {
			t.Errorf("write into a stopped reader: %d, %v", n, err)
		}
		// A deadline moved while waiting takes effect at once.
		done := make(chan error, 1)
		stuck.SetWriteDeadline(time.Time{})
		go func() {
			_, err := stuck.Write([]byte("more"))
			done <- err
		}()
		synctest.Wait()
		stuck.SetWriteDeadline(time.Now())
		if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("after the deadline moved: %v", err)
		}
		if qs := p.client.QueueStats(); qs[PriorityLow].Waits == 0 || qs[PriorityLow].WaitMax == 0 {
			t.Errorf("no waits counted: %+v", qs[PriorityLow])
		}
		p.client.Close()
		wg.Wait()
	})
}

// TestCloseWakesWriter: Close and the session's end release a Write
// waiting for window.
func TestCloseWakesWriter(t *testing.T) {
	cc, sc := net.Pipe()
	hold := make(chan struct{})
	defer close(hold)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{"stuck": func(*Stream) { <-hold }}))
	for _, how := range []string{"close", "session"} {
		st, err := p.client.OpenStream(context.Background(), "stuck", PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := st.Write(make([]byte, 1<<20))
			done <- err
		}()
		waitFor(t, 10*time.Second, "window to fill", func() bool {
			p.client.sched.mu.Lock()
			defer p.client.sched.mu.Unlock()
			return st.fl.state == flowParked
		})
		switch how {
		case "close":
			st.Close()
			if err := <-done; err != yamux.ErrStreamClosed {
				t.Errorf("write after Close: %v, want yamux's ErrStreamClosed", err)
			}
		case "session":
			p.client.Close()
			if err := <-done; !errors.Is(err, ErrSessionClosed) {
				t.Errorf("write after session Close: %v", err)
			}
		}
	}
}

func TestSetPriority(t *testing.T) {
	cc, sc := net.Pipe()
	got := make(chan Priority, 1)
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, routeOf(map[string]Handler{
		"x": func(s *Stream) {
			got <- s.Priority()
			io.Copy(io.Discard, s)
		},
	}))
	st, err := p.client.OpenStream(context.Background(), "x", PriorityLow)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetPriority(Priority(4)); !errors.Is(err, ErrInvalidPriority) {
		t.Errorf("SetPriority(4): %v", err)
	}
	if err := st.SetPriority(PriorityCritical); err != nil || st.Priority() != PriorityCritical {
		t.Fatalf("SetPriority: %v, now %v", err, st.Priority())
	}
	st.Write([]byte("x"))
	if pr := <-got; pr != PriorityLow {
		t.Errorf("remote sees %v, want the opening priority, low", pr)
	}
	waitFor(t, 5*time.Second, "the inbound stream to count", func() bool {
		return p.server.StreamsByPriority() == [NumPriorities]int{PriorityLow: 1}
	})
	if got := p.client.StreamsByPriority(); got != [NumPriorities]int{PriorityCritical: 1} {
		t.Errorf("client StreamsByPriority %v", got)
	}
	if qs := p.client.QueueStats(); qs[PriorityCritical].Served != 1 || qs[PriorityLow].Served != 0 {
		t.Errorf("chunk counted at %+v", qs)
	}
	st.Close()
	if got := p.client.StreamsByPriority(); got != ([NumPriorities]int{}) {
		t.Errorf("after Close: %v", got)
	}
}

// TestIntegrity: 32 streams at mixed priorities, some changing priority
// midway, each sending a random amount up to 2 MiB in writes of random
// sizes; every byte arrives, checked by SHA-256.
func TestIntegrity(t *testing.T) {
	type variant struct {
		name            string
		chunk, inflight int
		pair            func(testing.TB) (net.Conn, net.Conn)
	}
	var vs []variant
	for _, l := range links {
		vs = append(vs, variant{l.name, 0, 0, l.pair})
	}
	vs = append(vs, variant{"pipe/chunk=1KiB", 1 << 10, 3, links[0].pair}, variant{"tcp/chunk=1MiB", 1 << 20, 1, tcpPair})
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			cc, sc := v.pair(t)
			cfg := testConfig()
			cfg.ChunkSize, cfg.MaxInFlightChunks = v.chunk, v.inflight
			var mu sync.Mutex
			sums := map[uint32][32]byte{}
			var served sync.WaitGroup
			served.Add(32)
			p := newPair(t, cc, sc, cfg, testConfig(), nil, routeOf(map[string]Handler{
				"sum": func(s *Stream) {
					defer served.Done()
					h := sha256.New()
					if _, err := io.Copy(h, s); err != nil {
						t.Error(err)
					}
					mu.Lock()
					sums[s.ID()] = [32]byte(h.Sum(nil))
					mu.Unlock()
				},
			}))
			want := map[uint32][32]byte{}
			var wg sync.WaitGroup
			for i := range 32 {
				rng := rand.New(rand.NewPCG(uint64(i), 99))
				data := make([]byte, rng.IntN(2<<20)+1)
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				st, err := p.client.OpenStream(context.Background(), "sum", Priority(i%4))
				if err != nil {
					t.Fatal(err)
				}
				want[st.ID()] = sha256.Sum256(data)
				wg.Go(func() {
					rest := data
					for len(rest) > 0 {
						k := min(len(rest), 1+rng.IntN(200_000))
						if i%3 == 0 && rng.IntN(4) == 0 {
							st.SetPriority(Priority(rng.IntN(4)))
						}
						if _, err := st.Write(rest[:k]); err != nil {
							t.Error(err)
							return
						}
						rest = rest[k:]
					}
					st.Close()
				})
			}
			wg.Wait()
			served.Wait()
			for id, sum := range want {
				if sums[id] != sum {
					t.Errorf("stream %d: checksum mismatch", id)
				}
			}
			qs := p.client.QueueStats()
			for _, q := range qs {
				if q.Depth != 0 || q.QueuedBytes != 0 {
					t.Errorf("queue not empty after all writes returned: %+v", qs)
				}
			}
			if u := p.client.Utilization(); u != 0 {
				t.Errorf("utilization %v after all writes", u)
			}
		})
	}
}

// TestBackpressure: 50 writers of 1 MiB Writes on a link that has
// stopped draining (the far end is a fake that would read everything and
// return window, so that the memory measured is the sender's alone; but
// the link takes nothing). Each admitted Write waits for the link or for
// a turn, counting what its window lets it send (256 KiB); once those
// reach the bound the other writers wait (or, with FailFast, fail with
// ErrBackpressure), and the sender's memory does not grow: the scheduler
// copies nothing and the writers' buffers are theirs. (A remote that has
// stopped reading fills no queue: see TestStalledStreamBlocksNobody.)
func TestBackpressure(t *testing.T) {
	const writers, size = 50, 1 << 20
	for _, failFast := range []bool{false, true} {
		t.Run(fmt.Sprintf("failfast=%v", failFast), func(t *testing.T) {
			cc, sc := tcpPair(t)
			var got atomic.Int64
			fake := make(chan struct{})
			go func() {
				fakeRemote(sc, &got, true)
				close(fake)
			}()
			cfg := testConfig()
			cfg.FailFast = failFast
			stall := newStallConn(cc)
			s, err := NewSession(stall, testPeer(t, 1), testPeer(t, 2), true, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				s.Close()
				sc.Close()
				<-fake
			}()
			streams := make([]*Stream, writers)
			bufs := make([][]byte, writers) // the writers' own memory, before measuring
			for i := range streams {
				st, err := s.OpenStream(context.Background(), "stuck", PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				st.Write(nil) // the header: the SYN goes before the link stalls
				streams[i], bufs[i] = st, make([]byte, size)
			}
			// And two more streams, for later, likewise.
			other, err := s.OpenStream(context.Background(), "stuck", PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			vote, err := s.OpenStream(context.Background(), "vote", PriorityCritical)
			if err != nil {
				t.Fatal(err)
			}
			other.Write(nil)
			vote.Write(nil)
			window := int64(DefaultStreamWindow - len(streams[0].hdr))
			stall.stall(0)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var refused atomic.Int64
			var wg sync.WaitGroup
			for i, st := range streams {
				wg.Go(func() {
					for {
						_, err := st.Write(bufs[i])
						switch {
						case errors.Is(err, ErrBackpressure):
							refused.Add(1)
							return
						case err != nil:
							return
						}
					}
				})
			}
			// Low and normal writes are admitted below 3/4 of the bound.
			limit := int64(DefaultMaxQueuedBytes - DefaultMaxQueuedBytes/4)
			sc2 := s.sched
			// Blocking writers are admitted until the queue is full; with
			// FailFast, those refused give up. Every Write admitted waits
			// for a turn, but for the one holding the turns, blocked on the
			// link.
			waitFor(t, 20*time.Second, "the writes to settle", func() bool {
				sc2.mu.Lock()
				defer sc2.mu.Unlock()
				ready := 0
				for fl := sc2.ready[PriorityNormal].head; fl != nil; fl = fl.next {
					ready++
				}
				if ready != sc2.qWrites-1 || sc2.inflight != sc2.maxInflight {
					return false
				}
				if failFast {
					return refused.Load() == int64(writers-sc2.qWrites)
				}
				return sc2.qBytes >= limit
			})
			runtime.GC()
			runtime.ReadMemStats(&after)
			growth := int64(after.HeapInuse) - int64(before.HeapInuse)
			qs := s.QueueStats()[PriorityNormal]
			bound := int64(DefaultMaxQueuedBytes) + writers*DefaultStreamWindow
			t.Logf("sender's heap in use grew %d KiB (queue + windows: %d KiB); %d KiB sent; queue %+v; utilization %.2f; refused %d",
				growth>>10, bound>>10, got.Load()>>10, qs, s.Utilization(), refused.Load())
			if growth > 1<<20 {
				t.Errorf("heap grew by %d bytes with the link not draining", growth)
			}
			if (!failFast && qs.QueuedBytes < limit) || qs.QueuedBytes >= limit+DefaultStreamWindow {
				t.Errorf("queued %d bytes, want %d..%d", qs.QueuedBytes, limit, limit+DefaultStreamWindow)
			}
			if qs.QueuedBytes != int64(qs.Depth)*window {
				t.Errorf("%d Writes charged %d bytes, want a window (%d) each", qs.Depth, qs.QueuedBytes, window)
			}
			if failFast != (qs.Refusals > 0) {
				t.Errorf("refusals %d with FailFast %v", qs.Refusals, failFast)
			}
			// A normal write does not get in, if the queue is full.
			if qs.QueuedBytes >= limit {
				n, err := other.WriteContext(ctxTimeout(t, 10*time.Millisecond), []byte("x"))
				if failFast && (!errors.Is(err, ErrBackpressure) || n != 0) {
					t.Errorf("normal write on a full queue: %d, %v; want ErrBackpressure", n, err)
				}
				if !failFast && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("normal write on a full queue: %d, %v; want a timeout", n, err)
				}
			}
			// A critical write still gets in, the last quarter being kept,
			// and goes once the link drains.
			voted := make(chan error, 1)
			go func() {
				_, err := vote.Write(make([]byte, 1000))
				voted <- err
			}()
			waitFor(t, 10*time.Second, "the critical write to be admitted", func() bool {
				return s.QueueStats()[PriorityCritical].Depth == 1
			})
			stall.resume()
			if err := await(t, voted, "the critical write"); err != nil {
				t.Errorf("critical write on a full queue: %v", err)
			}
			vote.Reset()
			other.Reset()
			s.Close()
			wg.Wait()
		})
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestBackpressureOrder: Writes waiting for room are admitted highest
// priority first, in arrival order within a priority.
func TestBackpressureOrder(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxQueuedWrites = 4 // low and normal: 3
		hold := make(chan struct{})
		p, _ := slowPair(t, 1<<20, cfg, map[string]Handler{"stuck": func(*Stream) { <-hold }})
		defer close(hold)
		var wg sync.WaitGroup
		// Every Write here is larger than a window into a remote that does
		// not read: once admitted, it stays in the queue until reset.
		write := func(prio Priority) *Stream {
			st, err := p.client.OpenStream(context.Background(), "stuck", prio)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { st.Write(make([]byte, 1<<20)) })
			synctest.Wait()
			return st
		}
		var fill []*Stream
		for range 3 {
			fill = append(fill, write(PriorityLow))
		}
		names := map[*Stream]string{}
		var waiting []*Stream
		for i, prio := range []Priority{PriorityLow, PriorityNormal, PriorityNormal, PriorityLow} {
			st := write(prio)
			names[st] = fmt.Sprintf("%v#%d", prio, i)
			waiting = append(waiting, st)
		}
		admitted := func() string {
			sc := p.client.sched
			sc.mu.Lock()
			defer sc.mu.Unlock()
			var in []string
			for _, st := range waiting {
				if st.fl.qWrites > 0 {
					in = append(in, names[st])
				}
			}
			return fmt.Sprint(in)
		}
		if got := admitted(); got != "[]" {
			t.Errorf("admitted past the bound: %s", got)
		}
		for i, want := range []string{"[normal#1]", "[normal#1 normal#2]", "[low#0 normal#1 normal#2]"} {
			fill[i].Reset() // frees a place
			synctest.Wait()
			if got := admitted(); got != want {
				t.Errorf("after %d places freed: admitted %s, want %s", i+1, got, want)
			}
		}
		waiting[1].Reset()
		synctest.Wait()
		if got, want := admitted(), "[low#0 normal#2 low#3]"; got != want {
			t.Errorf("admitted %s, want %s", got, want)
		}
		p.client.Close()
		wg.Wait()
	})
}

// TestChunkNoAllocs: the send path allocates nothing per chunk once a
// stream is going (the remote here is a fake that allocates nothing).
func TestChunkNoAllocs(t *testing.T) {
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			s, st := fakeRemoteStream(t, l.pair, testConfig())
			buf := make([]byte, 4*fullChunk)
			st.Write(buf)
			served := s.QueueStats()[PriorityNormal].Served
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := st.Write(buf); err != nil {
					t.Fatal(err)
				}
			})
			chunks := s.QueueStats()[PriorityNormal].Served - served
			t.Logf("%.2f allocations per 4-chunk write (%d chunks in %d writes)", allocs, chunks, 201)
			if raceEnabled {
				t.Skip("the race detector makes sync.Pool drop buffers at random")
			}
			if allocs != 0 {
				t.Errorf("%v allocations per write", allocs)
			}
		})
	}
}

// TestReservedStreamsNormalized: the reserved share of MaxStreams a zero,
// negative or explicit ReservedStreams stands for.
func TestReservedStreamsNormalized(t *testing.T) {
	for _, c := range []struct{ max, res, want int }{{0, 0, 0}, {2, 0, 1}, {10, 0, 1}, {11, 0, 2}, {256, 0, 26}, {10, -1, 0}, {10, 4, 4}} {
		got, err := Config{MaxStreams: c.max, ReservedStreams: c.res}.normalize()
		if err != nil || got.ReservedStreams != c.want {
			t.Errorf("MaxStreams %d ReservedStreams %d: normalized to %d, %v; want %d", c.max, c.res, got.ReservedStreams, err, c.want)
		}
	}
}
