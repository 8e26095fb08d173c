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
