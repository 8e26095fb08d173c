package faultnet_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a faultnet-wrapped dialer and the listener side's conn, over
// the in-memory transport.
func pair(t *testing.T) (*faultnet.Transport, transport.Conn, transport.Conn) {
	t.Helper()
	n := transport.NewMemoryNetwork()
	idA, _ := peer.GenerateIdentity()
	idB, _ := peer.GenerateIdentity()
	ta, err := n.NewTransport(transport.Config{Identity: idA, Network: "t"})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := n.NewTransport(transport.Config{Identity: idB, Network: "t"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tb.Listen("b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ft := faultnet.Wrap(ta)
	accepted := make(chan transport.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ft.Dial(ctx, "b", idB.ID())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return ft, c, s
}

func TestBlackHoleSwallowsWritesAndBlocksReads(t *testing.T) {
	ft, c, s := pair(t)
	if ft.Dials() != 1 {
		t.Fatalf("Dials = %d", ft.Dials())
	}
	ft.BlackHole()
	if n, err := c.Write([]byte("lost")); n != 4 || err != nil {
		t.Fatalf("Write into the hole = %d, %v; want silent success", n, err)
	}
	// Nothing reaches the other side...
	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s.Read(make([]byte, 4)); !isTimeout(err) {
		t.Fatalf("remote read = %v, want a timeout", err)
	}
	// ...and nothing comes out of the hole until it is closed.
	go func() { _, _ = s.Write([]byte("unheard")) }()
	readDone := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		readDone <- err
	}()
	// Proving a negative needs a window: a read that returns at all in it
	// has failed the test.
	select {
	case err := <-readDone:
		t.Fatalf("read from a black hole returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Close()
	if err := <-readDone; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close = %v, want net.ErrClosed", err)
	}
}

func TestSeverClosesLinks(t *testing.T) {
	ft, c, s := pair(t)
	ft.Sever()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write on a severed link succeeded")
	}
	if _, err := io.ReadAll(s); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("remote read after sever = %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
