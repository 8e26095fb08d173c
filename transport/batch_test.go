package transport

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func TestTLSWriteGathersRecords(t *testing.T) {
	c, server := dialPair(t, tcpEnv{}, nil)

	tc := c.(*tlsConn)
	counter := &countingConn{Conn: tc.batch.Conn}
	tc.batch.Conn = counter

	for _, size := range []int{100, 16 << 10, 64 << 10, 200 << 10} {
		msg := make([]byte, size)
		_, _ = rand.Read(msg)
		before := counter.count()
		got := make(chan []byte, 1)
		go func() {
			buf := make([]byte, size)
			_, err := io.ReadFull(server, buf)
			if err != nil {
				t.Error(err)
			}
			got <- buf
		}()
		if n, err := c.Write(msg); err != nil || n != size {
			t.Fatalf("Write(%d) = %d, %v", size, n, err)
		}
		if !bytes.Equal(<-got, msg) {
			t.Fatalf("%d bytes arrived altered", size)
		}
		records := (size + tlsRecordLen - 1) / tlsRecordLen
		wantMax := (size + maxBatch - 1) / maxBatch
		if size <= tlsRecordLen {
			wantMax = 1
		}
		if w := counter.count() - before; w > wantMax {
			t.Errorf("Write(%d): %d records took %d socket writes, want at most %d", size, records, w, wantMax)
		}
	}
}
