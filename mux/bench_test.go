package mux

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"runtime"
	"slices"

	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// tlsPair returns both ends of a TLS 1.3 connection over loopback TCP,
// handshake done, using a throwaway self-signed ed25519 certificate.
func tlsPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	cc, sc := tcpPair(tb)
	client := tls.Client(cc, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	server := tls.Server(sc, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return client, server
}

var benchLinks = []struct {
	name string
	pair func(testing.TB) (net.Conn, net.Conn)
}{
	{"tls", tlsPair},
	{"tcp", tcpPair},
}

// throughputLinks adds small writes over TLS, where a data frame is well
// under one TLS record and joining its header saves a record per frame.
var throughputLinks = []struct {
	name  string
	pair  func(testing.TB) (net.Conn, net.Conn)
	write int
}{
	{"tls", tlsPair, 64 << 10},
	{"tcp", tcpPair, 64 << 10},
	{"tls-1KiB", tlsPair, 1 << 10},
}

func benchConfig() Config {
	c := DefaultConfig()
	c.EnableKeepAlive = false
	return c
}

func rawYamuxPair(tb testing.TB, cc, sc net.Conn) (*yamux.Session, *yamux.Session) {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	client, err := yamux.Client(cc, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	server, err := yamux.Server(sc, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return client, server
}

// runThroughput writes b.N chunks of size bytes to w, closes it, and
// waits for the reader's count.
func runThroughput(b *testing.B, w io.WriteCloser, size int, got <-chan int64) {
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	n := <-got
	b.StopTimer()
	if n != int64(b.N)*int64(size) {
		b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*int64(size))
	}
}

// BenchmarkStreamThroughput: one stream, 64 KiB writes, over TLS 1.3 and
// plain TCP on loopback, and 1 KiB writes over TLS; raw yamux (no frame
// conn) against mux.Session in the same run, so their ratio can be read.
func BenchmarkStreamThroughput(b *testing.B) {
	for _, l := range throughputLinks {
		b.Run(l.name+"/raw-yamux", func(b *testing.B) {
			cc, sc := l.pair(b)
			client, server := rawYamuxPair(b, cc, sc)
			defer client.Close()
			defer server.Close()
			got := make(chan int64, 1)
			go func() {
				s, err := server.AcceptStream()
				if err != nil {
					got <- -1
					return
				}
				n, _ := io.Copy(io.Discard, s)
				got <- n
			}()
			s, err := client.OpenStream()
			if err != nil {
				b.Fatal(err)
			}
			runThroughput(b, s, l.write, got)
		})
		b.Run(l.name+"/mux", func(b *testing.B) {
			cc, sc := l.pair(b)
			got := make(chan int64, 1)
			p := newPair(b, cc, sc, benchConfig(), benchConfig(), nil, routeOf(map[string]Handler{
				"sink": func(s *Stream) {
					n, _ := io.Copy(io.Discard, s)
					got <- n
				},
			}))
			s, err := p.client.OpenStream(context.Background(), "sink", PriorityNormal)
			if err != nil {
				b.Fatal(err)
			}
			runThroughput(b, s, l.write, got)
		})
	}
}

// BenchmarkOpenStreamEcho: OpenStream, 1-byte write, 1-byte read, Close,
// sequentially; reports the mean and the p50/p99 of single operations.
func BenchmarkOpenStreamEcho(b *testing.B) {
	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		b.ReportMetric(us(sum/time.Duration(len(lat))), "µs/op")
		b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
		b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
	}
	for _, l := range benchLinks {
		b.Run(l.name+"/raw-yamux", func(b *testing.B) {
			cc, sc := l.pair(b)
			client, server := rawYamuxPair(b, cc, sc)
			defer client.Close()
			defer server.Close()
			go func() {
				for {
					s, err := server.AcceptStream()
					if err != nil {
						return
					}
					go func() {
						buf := make([]byte, 1)
						io.ReadFull(s, buf)
						s.Write(buf)
						s.Close()
					}()
				}
			}()
			lat := make([]time.Duration, 0, b.N)
			buf := make([]byte, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				s, err := client.OpenStream()
				if err != nil {
					b.Fatal(err)
				}
				s.Write(buf)
				if _, err := io.ReadFull(s, buf); err != nil {
					b.Fatal(err)
				}
				s.Close()
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			report(b, lat)
		})
		b.Run(l.name+"/mux", func(b *testing.B) {
			cc, sc := l.pair(b)
			p := newPair(b, cc, sc, benchConfig(), benchConfig(), nil, routeOf(map[string]Handler{
				"echo": func(s *Stream) {
					buf := make([]byte, 1)
					io.ReadFull(s, buf)
					s.Write(buf)
				},
			}))
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			buf := make([]byte, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				s, err := p.client.OpenStream(ctx, "echo", PriorityNormal)
				if err != nil {
					b.Fatal(err)
				}
				s.Write(buf)
				if _, err := io.ReadFull(s, buf); err != nil {
					b.Fatal(err)
				}
				s.Close()
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			report(b, lat)
		})
	}
}

// throughputSide is one end of a long-lived stream that the benchmark
// writes into: the reader reports each time it has read perIter bytes.
type throughputSide struct {
	w    io.Writer
	done chan struct{} // a value per perIter bytes read
}

func readCounting(r io.Reader, perIter int64, done chan<- struct{}) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		for n >= perIter {
			n -= perIter
			done <- struct{}{}
		}
		if err != nil {
			return
		}
	}
}

// BenchmarkSchedulerThroughput: one stream, 64 KiB writes, unthrottled,
// over TLS 1.3 on loopback TCP and over plain loopback TCP: mux (write
// scheduler, frame conn) against raw yamux on the same kind of link. Each
// iteration sends perIter bytes on each, timed separately, alternating
// which goes first, so that both see the same machine; "ratio" is mux's
// MB/s over raw yamux's.
func BenchmarkSchedulerThroughput(b *testing.B) {
	const write, perIter = 64 << 10, 8 << 20
	for _, l := range benchLinks {
		b.Run(l.name, func(b *testing.B) {
			rc, rs := l.pair(b)
			rawC, rawS := rawYamuxPair(b, rc, rs)
			defer rawC.Close()
			defer rawS.Close()
			raw := throughputSide{done: make(chan struct{}, 1)}
			go func() {
				s, err := rawS.AcceptStream()
				if err != nil {
					return
				}
				readCounting(s, perIter, raw.done)
			}()
			rst, err := rawC.OpenStream()
			if err != nil {
				b.Fatal(err)
			}
			raw.w = rst

			mc, ms := l.pair(b)
			m := throughputSide{done: make(chan struct{}, 1)}
			p := newPair(b, mc, ms, benchConfig(), benchConfig(), nil, routeOf(map[string]Handler{
				"sink": func(s *Stream) { readCounting(s, perIter, m.done) },
			}))
			mst, err := p.client.OpenStream(context.Background(), "sink", PriorityNormal)
			if err != nil {
				b.Fatal(err)
			}
			m.w = mst

			buf := make([]byte, write)
			run := func(s throughputSide) time.Duration {
				t0 := time.Now()
				for range perIter / write {
					if _, err := s.w.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				<-s.done
				return time.Since(t0)
			}
			run(raw) // warm up both
			run(m)
			var rawD, muxD time.Duration
			b.SetBytes(2 * perIter)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					rawD += run(raw)
					muxD += run(m)
				} else {
					muxD += run(m)
					rawD += run(raw)
				}
			}
			b.StopTimer()
			mbs := func(d time.Duration) float64 { return float64(b.N) * perIter / d.Seconds() / 1e6 }
			b.ReportMetric(mbs(rawD), "raw-MB/s")
			b.ReportMetric(mbs(muxD), "mux-MB/s")
			b.ReportMetric(mbs(muxD)/mbs(rawD), "ratio")
			rst.Close()
			mst.Close()
		})
	}
}

// BenchmarkChunkAllocs: allocations per chunk written in steady state.
// The remote is a fake that allocates nothing (fakeRemote), so the count
// is the sending side's alone: mux's scheduler and frame conn, and
// yamux's handling of the window updates that come back. (A yamux
// receiver allocates per frame itself, as raw yamux does; see
// BenchmarkStreamThroughput's allocs/op.)
func BenchmarkChunkAllocs(b *testing.B) {
	for _, l := range links {
		b.Run(l.name, func(b *testing.B) {
			s, st := fakeRemoteStream(b, l.pair, benchConfig())
			buf := make([]byte, 64<<10)
			for range 64 { // past the first frames and the pools' warm-up
				st.Write(buf)
			}
			served := s.QueueStats()[PriorityNormal].Served
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := st.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			chunks := s.QueueStats()[PriorityNormal].Served - served
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(chunks), "allocs/chunk")
			b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		})
	}
}
