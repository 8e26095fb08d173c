package peerlink_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/mux"
)

// Two nodes on loopback: one serves an echo protocol, the other connects
// and opens a stream to it.
func Example() {
	newNode := func() *peerlink.ConnectionManager {
		cfg := peerlink.DefaultConfig()
		cfg.Network = "example-chain-1"           // nodes of other networks are refused
		cfg.ListenAddrs = []string{"127.0.0.1:0"} // port 0: pick a free one
		m, err := peerlink.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		return m
	}
	server, client := newNode(), newNode()
	defer server.Close()
	defer client.Close()

	// Handlers run in their own goroutine and own the stream.
	err := server.SetStreamHandler("/example/echo/1", func(s *mux.Stream) {
		_, _ = io.Copy(s, s)
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// AddrInfo is what a node shares so that others can reach it.
	if err := client.Connect(ctx, server.AddrInfo()); err != nil {
		log.Fatal(err)
	}
	s, err := client.OpenStream(ctx, server.ID(), "/example/echo/1", mux.PriorityHigh)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("vote")); err != nil {
		log.Fatal(err)
	}
	reply := make([]byte, 4)
	if _, err := io.ReadFull(s, reply); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply), client.Status(server.ID()), client.ConnectionCount())
	// Output: vote connected 1
}

// Subscribe to link events; a subscriber that falls behind loses events
// (counted by Dropped) but never slows the manager down.
func ExampleConnectionManager_Subscribe() {
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	a, _ := peerlink.New(cfg)
	b, _ := peerlink.New(cfg)
	defer a.Close()
	defer b.Close()

	sub := a.Subscribe(16)
	defer sub.Close()
	_ = a.Connect(context.Background(), b.AddrInfo())
	_ = a.Disconnect(b.ID())
	for ev := range sub.C {
		fmt.Println(ev.Type, ev.Direction, ev.Reason)
		if ev.Type == peerlink.EventDisconnected {
			break
		}
	}
	// Output:
	// connected outbound none
	// disconnected outbound local disconnect
}

// Warm a peer before it is needed: once WarmConnections returns, its link
// is up and its round trip measured, so the first request pays for
// neither the dial nor the handshake. Config.Warming.MinWarm keeps a
// number of peers warm this way, chosen by score.
func ExampleConnectionManager_WarmConnections() {
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	a, _ := peerlink.New(cfg)
	b, _ := peerlink.New(cfg)
	defer a.Close()
	defer b.Close()

	_ = a.AddPeer(b.AddrInfo())
	fmt.Println(a.WarmingState(b.ID()))
	res, err := a.WarmConnections(context.Background(), b.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res[0].State, res[0].RTT > 0, a.Status(b.ID()))
	// Output:
	// cold
	// warm true connected
}
