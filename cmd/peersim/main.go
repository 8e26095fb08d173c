// Command peersim runs peerlink nodes on this machine and reports what
// their links carried.
//
// With no flags it starts 5 nodes on 127.0.0.1 (TCP + TLS 1.3), connects
// them in a ring, has each node send messages to both ring neighbours over
// streams (each message is echoed back and checked), prints a table of
// every node's peers, and exits 0 — or 1 if any message was lost.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
)

const echoProtocol = "/peersim/echo/1"

func main() {
	nodes := flag.Int("nodes", 5, "number of nodes (at least 2)")
	messages := flag.Int("messages", 100, "messages each node sends to each neighbour")
	size := flag.Int("size", 1024, "message size in bytes")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	flag.Parse()
	if err := run(os.Stdout, *nodes, *messages, *size, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "peersim:", err)
		os.Exit(1)
	}
}

type node struct {
	m              *peerlink.ConnectionManager
	sent, received atomic.Uint64
}

func run(out io.Writer, n, messages, size int, timeout time.Duration) error {
	if n < 2 {
		return fmt.Errorf("-nodes is %d; want at least 2", n)
	}
	if messages < 1 || size < 1 {
		return fmt.Errorf("-messages and -size must be positive (got %d, %d)", messages, size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	nodes := make([]*node, n)
	for i := range nodes {
		cfg := peerlink.DefaultConfig()
		cfg.Network = "peersim"
		cfg.ListenAddrs = []string{"127.0.0.1:0"}
		m, err := peerlink.New(cfg)
		if err != nil {
			return err
		}
		defer m.Close()
		nd := &node{m: m}
		if err := m.SetStreamHandler(echoProtocol, func(s *mux.Stream) {
			k, _ := io.Copy(s, s)
			nd.received.Add(uint64(k))
		}); err != nil {
			return err
		}
		nodes[i] = nd
	}

	start := time.Now()
	for i, nd := range nodes {
		next := nodes[(i+1)%n]
		if err := nd.m.Connect(ctx, next.m.AddrInfo()); err != nil {
			return fmt.Errorf("node %d → node %d: %w", i, (i+1)%n, err)
		}
	}
	connected := time.Since(start)

	// Each node keeps one stream open to each neighbour and sends its
	// messages over it, checking every echo.
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	streams := make(chan *mux.Stream, 2*n)
	for i, nd := range nodes {
		for _, j := range []int{(i + 1) % n, (i + n - 1) % n} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := exchange(ctx, nd, nodes[j], messages, size)
				if err != nil {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("node %d → node %d: %w", i, j, err))
					errMu.Unlock()
				}
				if s != nil {
					streams <- s
				}
			}()
			if n == 2 {
				break // the two neighbours are the same node
			}
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	report(out, nodes)
	close(streams)
	for s := range streams {
		s.Close()
	}
	var total uint64
	for _, nd := range nodes {
		total += nd.sent.Load()
	}
	fmt.Fprintf(out, "\n%d nodes, ring connected in %v; %d messages of %d B echoed (%.1f MiB) in %v\n",
		n, connected.Round(time.Millisecond), total/uint64(size), size, float64(total)/(1<<20), elapsed.Round(time.Millisecond))
	return errors.Join(errs...)
}

// exchange sends messages to a neighbour over one stream and checks each
// echo. The stream is returned open so the report can show it.
func exchange(ctx context.Context, from, to *node, messages, size int) (*mux.Stream, error) {
	s, err := from.m.OpenStream(ctx, to.m.ID(), echoProtocol, mux.PriorityNormal)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	msg := make([]byte, size)
	got := make([]byte, size)
	for range messages {
		if _, err := rand.Read(msg); err != nil {
			return s, err
		}
		if _, err := s.Write(msg); err != nil {
			return s, err
		}
		if _, err := io.ReadFull(s, got); err != nil {
			return s, err
		}
		if !bytes.Equal(msg, got) {
			return s, errors.New("echo differs from the message sent")
		}
		from.sent.Add(uint64(size))
	}
	return s, nil
}

func report(out io.Writer, nodes []*node) {
	index := make(map[string]int, len(nodes))
	for i, nd := range nodes {
		index[nd.m.ID().String()] = i
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tid\tpeer\tstatus\tdirection\tstreams\tbytes out\tbytes in\t")
	for i, nd := range nodes {
		for _, p := range nd.m.Peers() {
			info, err := nd.m.ConnectionInfo(p)
			if err != nil {
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t\n", i, nd.m.ID().ShortString(), index[p.String()],
				nd.m.Status(p), info.Direction, info.Streams, info.BytesOut, info.BytesIn)
		}
	}
	tw.Flush()
}
