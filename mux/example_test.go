package mux_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"

	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

func examplePeer(seed byte) peer.ID {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	id, err := peer.IDFromPublicKey(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
	if err != nil {
		panic(err)
	}
	return id
}

func Example() {
	alice, bob := examplePeer(1), examplePeer(2)
	c1, c2 := net.Pipe()

	// Bob serves "echo/1": it reads the request to EOF and writes it back.
	route := func(protocol string) mux.Handler {
		if protocol != "echo/1" {
			return nil // the opener gets ErrProtocolNotSupported
		}
		return func(s *mux.Stream) {
			msg, _ := io.ReadAll(s)
			fmt.Printf("bob: %q from the dialer, priority %s\n", msg, s.Priority())
			s.Write(msg)
		} // the session closes the stream when the handler returns
	}
	server, err := mux.NewSession(c2, bob, alice, false, mux.DefaultConfig(), route)
	if err != nil {
		panic(err)
	}
	defer server.Close()
	client, err := mux.NewSession(c1, alice, bob, true, mux.DefaultConfig(), nil)
	if err != nil {
		panic(err)
	}
	defer client.Close()

	s, err := client.OpenStream(context.Background(), "echo/1", mux.PriorityHigh)
	if err != nil {
		panic(err)
	}
	s.Write([]byte("hello")) // the stream header goes in the same frame
	s.Close()                // half close: bob reads EOF, we can still read
	reply, err := io.ReadAll(s)
	fmt.Printf("alice: %q, %v\n", reply, err)
	// Output:
	// bob: "hello" from the dialer, priority high
	// alice: "hello", <nil>
}
