package transport_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

func Example() {
	serverID, _ := peer.GenerateIdentity()
	clientID, _ := peer.GenerateIdentity()

	server, err := transport.NewTCP(transport.Config{Identity: serverID, Network: "example-net"})
	if err != nil {
		log.Fatal(err)
	}
	client, err := transport.NewTCP(transport.Config{Identity: clientID, Network: "example-net"})
	if err != nil {
		log.Fatal(err)
	}

	l, err := server.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Println("server:", c.Direction(), "link from the client:", c.RemotePeer() == clientID.ID())
		c.Write([]byte("hello"))
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The dialer names the ID it expects; TLS proves it.
	c, err := client.Dial(ctx, l.Addr().String(), serverID.ID())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg, _ := io.ReadAll(c)
	<-served
	fmt.Println("client:", c.Direction(), string(msg))
	// Output:
	// server: inbound link from the client: true
	// client: outbound hello
}
