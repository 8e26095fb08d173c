package transport

import "net"

// replayConn is an inbound socket whose first byte the listener read to
// see that the remote speaks (Config.FirstByteTimeout): its Read returns
// that byte first, then reads the socket. Everything else (Write,
// deadlines, addresses, Close) is the socket's own. It is read by one
// goroutine, the handshake's; once the handshake has taken the byte,
// the securers put the socket itself under the link (unwrapReplay), so
// an established link reads and writes its socket as directly as ever.
type replayConn struct {
	net.Conn
	prefix []byte
}

func newReplayConn(c net.Conn, prefix []byte) *replayConn {
	return &replayConn{Conn: c, prefix: prefix}
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 && len(p) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// unwrapReplay returns the socket under c if c is a replayConn that has
// replayed all it held, else c.
func unwrapReplay(c net.Conn) net.Conn {
	if r, ok := c.(*replayConn); ok && len(r.prefix) == 0 {
		return r.Conn
	}
	return c
}
