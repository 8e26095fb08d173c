package peerlink_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// The head-of-line workload: a link shaped to 20 MB/s with 2 ms of one-way
// latency; four low-priority streams saturate it one way while a critical
// stream ping-pongs 1 KiB messages. The shaper's queue is 32 KiB: the
// unsent bytes a TCP socket holds under peerlink's TCP_NOTSENT_LOWAT.
var holLink = faultnet.Link{Latency: 2 * time.Millisecond, Bandwidth: 20e6, Buffer: transport.DefaultNotSentLowat}

const (
	holBulkStreams = 4
	holMsg         = 1 << 10
	holSinkProto   = "/bench/sink/1"
)

// streamOpener opens streams of one kind of stack: peerlink, or raw yamux.
type streamOpener interface {
	// open returns a stream whose far end echoes (echo) or discards.
	open(echo bool, prio mux.Priority) (net.Conn, error)
}

type peerlinkOpener struct {
	m  *peerlink.ConnectionManager
	to peer.ID
}

func (o peerlinkOpener) open(echo bool, prio mux.Priority) (net.Conn, error) {
	proto := holSinkProto
	if echo {
		proto = echoProto
	}
	return o.m.OpenStream(context.Background(), o.to, proto, prio)
}

// rawOpener is yamux alone: the first byte of a stream says echo or sink.
type rawOpener struct{ s *yamux.Session }

func (o rawOpener) open(echo bool, _ mux.Priority) (net.Conn, error) {
	s, err := o.s.OpenStream()
	if err != nil {
		return nil, err
	}
	kind := []byte{0}
	if echo {
		kind[0] = 1
	}
	_, err = s.Write(kind)
	return s, err
}

// shapedTransport returns a TransportFunc whose raw connections (under
// TLS, or the in-memory hello) are shaped like l, both directions when
// both ends use it.
func shapedTransport(base peerlink.TransportFunc, l faultnet.Link) peerlink.TransportFunc {
	return func(tc transport.Config) (transport.Transport, error) {
		tc.RawConnWrapper = l.Wrap
		return base(tc)
	}
}

// peerlinkPair connects two managers over shaped links; addr names a
// listen address for each end.
func peerlinkPair(b *testing.B, base peerlink.TransportFunc, l faultnet.Link, addr func(string) string) streamOpener {
	mk := func(end string) *peerlink.ConnectionManager {
		return newManager(b, func(c *peerlink.Config) {
			c.Transport = shapedTransport(base, l)
			c.ListenAddrs = []string{addr(end)}
		})
	}
	a, z := mk("a"), mk("z")
	withEcho(z, b)
	if err := z.SetStreamHandler(holSinkProto, func(s *mux.Stream) { _, _ = io.Copy(io.Discard, s) }); err != nil {
		b.Fatal(err)
	}
	connect(b, a, z)
	return peerlinkOpener{m: a, to: z.ID()}
}

// rawPair connects raw yamux sessions over a link from the same shaped
// transport (so TLS and shaping are the same; only the scheduler is
// missing).
func rawPair(b *testing.B, base peerlink.TransportFunc, l faultnet.Link, addr func(string) string) streamOpener {
	idA, idZ := newIdentity(b), newIdentity(b)
	mk := func(id *peer.Identity) transport.Transport {
		t, err := shapedTransport(base, l)(transport.Config{Identity: id, Network: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	ta, tz := mk(idA), mk(idZ)
	ln, err := tz.Listen(addr("z"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ca, err := ta.Dial(context.Background(), ln.Addr().String(), idZ.ID())
	if err != nil {
		b.Fatal(err)
	}
	cz := <-accepted
	client, server := yamuxPair(b, ca, cz)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := server.AcceptStream()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.Close()
				kind := make([]byte, 1)
				if _, err := io.ReadFull(s, kind); err != nil {
					return
				}
				if kind[0] == 1 {
					_, _ = io.Copy(s, s)
				} else {
					_, _ = io.Copy(io.Discard, s)
				}
			}()
		}
	}()
	b.Cleanup(func() {
		client.Close()
		server.Close()
		wg.Wait()
	})
	return rawOpener{s: client}
}

// pingPong measures n round trips of a holMsg message on a critical
// stream, with bulk low-priority streams saturating the link if loaded.
func pingPong(b *testing.B, o streamOpener, n int, loaded bool) []time.Duration {
	stop := make(chan struct{})
	var bulk sync.WaitGroup
	if loaded {
		chunk := make([]byte, 64<<10)
		for range holBulkStreams {
			s, err := o.open(false, mux.PriorityLow)
			if err != nil {
				b.Fatal(err)
			}
			bulk.Add(1)
			go func() {
				defer bulk.Done()
				defer s.Close()
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = s.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := s.Write(chunk); err != nil && !isTimeout(err) {
						return
					}
				}
			}()
		}
	}
	defer func() {
		close(stop)
		bulk.Wait()
	}()
	s, err := o.open(true, mux.PriorityCritical)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg, got := make([]byte, holMsg), make([]byte, holMsg)
	if loaded { // let the bulk streams fill the link first
		time.Sleep(100 * time.Millisecond)
	}
	rtts := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, got); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkHeadOfLine: critical 1 KiB ping-pong p50/p99 idle and under
// load from four saturating low streams, peerlink vs raw yamux, over TCP
// + TLS on loopback and over the in-memory transport, the link shaped to
// 20 MB/s with 2 ms one-way latency. "bound-ms" is the target for
// peerlink's loaded p99: twice its idle p99 plus one chunk's
// transmission time (16 KiB at 20 MB/s: 0.82 ms).
func BenchmarkHeadOfLine(b *testing.B) {
	network := transport.NewMemoryNetwork()
	pairs := 0
	for _, tr := range []struct {
		name string
		base peerlink.TransportFunc
	}{
		{"tcp-tls", peerlink.TCP},
		{"memory", peerlink.MemoryTransport(network)},
	} {
		for _, stack := range []string{"peerlink", "raw-yamux"} {
			b.Run(tr.name+"/"+stack, func(b *testing.B) {
				pairs++
				addr := func(end string) string {
					if tr.name == "tcp-tls" {
						return "127.0.0.1:0"
					}
					return fmt.Sprintf("hol-%d-%s", pairs, end)
				}
				var o streamOpener
				if stack == "peerlink" {
					o = peerlinkPair(b, tr.base, holLink, addr)
				} else {
					o = rawPair(b, tr.base, holLink, addr)
				}
				const samples = 200
				var idle, loaded []time.Duration
				b.ResetTimer()
				for range b.N {
					idle = append(idle, pingPong(b, o, samples, false)...)
					loaded = append(loaded, pingPong(b, o, samples, true)...)
				}
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				chunkTime := time.Duration(float64(16<<10) / float64(holLink.Bandwidth) * float64(time.Second))
				b.ReportMetric(ms(percentile(idle, 0.5)), "idle-p50-ms")
				b.ReportMetric(ms(percentile(idle, 0.99)), "idle-p99-ms")
				b.ReportMetric(ms(percentile(loaded, 0.5)), "load-p50-ms")
				b.ReportMetric(ms(percentile(loaded, 0.99)), "load-p99-ms")
				b.ReportMetric(ms(2*percentile(idle, 0.99)+chunkTime), "bound-ms")
			})
		}
	}
}

// BenchmarkLongLink: one stream over a simulated 100 Mbit/s link with a
// 100 ms round trip (the in-memory transport, shaped both ways), with the
// window sized from the handshake RTT and TargetBandwidth against the
// fixed 256 KiB default. Each op moves 16 MiB on a new stream, from its
// open to the receiver's receipt of the last byte; "link-%" is the throughput
// as a share of the link's bandwidth (target: 80 % or more sized).
func BenchmarkLongLink(b *testing.B) {
	const bandwidth = 12_500_000 // 100 Mbit/s
	link := faultnet.Link{Latency: 50 * time.Millisecond, Bandwidth: bandwidth}
	network := transport.NewMemoryNetwork()
	for i, sized := range []bool{true, false} {
		b.Run(map[bool]string{true: "sized-window", false: "default-window"}[sized], func(b *testing.B) {
			mk := func(end string) *peerlink.ConnectionManager {
				return newManager(b, func(c *peerlink.Config) {
					c.Transport = shapedTransport(peerlink.MemoryTransport(network), link)
					c.ListenAddrs = []string{fmt.Sprintf("long-%d-%d-%s", i, b.N, end)}
					c.TargetBandwidth = bandwidth
					if !sized {
						c.TargetBandwidth = -1
					}
				})
			}
			src, dst := mk("src"), mk("dst")
			if err := dst.SetStreamHandler(holSinkProto, func(s *mux.Stream) {
				_, _ = io.Copy(io.Discard, s)
				_, _ = s.Write([]byte{1}) // the receipt: everything has arrived
			}); err != nil {
				b.Fatal(err)
			}
			dstEvents := dst.Subscribe(0)
			connect(b, src, dst)
			waitEvent(b, dstEvents, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
			stats, err := dst.StreamStats(src.ID()) // the receiver's window paces the sender
			if err != nil {
				b.Fatal(err)
			}
			const perOp = 16 << 20
			buf := make([]byte, 256<<10)
			b.SetBytes(perOp)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				s, err := src.OpenStream(ctxT(b), dst.ID(), holSinkProto, mux.PriorityLow)
				if err != nil {
					b.Fatal(err)
				}
				for sent := 0; sent < perOp; sent += len(buf) {
					if _, err := s.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				s.Close()
				if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)*perOp/elapsed.Seconds()/bandwidth*100, "link-%")
			b.ReportMetric(float64(stats.Window>>10), "window-KiB")
		})
	}
}
