package transport

import (
	"fmt"
	"net"
)

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

// recordTypeHandshake is the first byte of every TLS ClientHello: the
// type of the record that carries it.
const recordTypeHandshake = 0x16

// leadConn is an outbound socket whose first byte the dialer wrote at
// once, ahead of the ClientHello: a listener under a flood of silent
// sockets evicts those that have not spoken, and making the ClientHello
// takes a key generation (X25519MLKEM768), time in which a busy listener
// may see several newer sockets arrive. So the dialer speaks first and
// the TLS client's first Write leaves out the byte already sent. Once
// the handshake is done the securer puts the socket itself back under
// the link.
type leadConn struct {
	net.Conn
	lead byte
	done bool
}

func (c *leadConn) Write(p []byte) (int, error) {
	if c.done || len(p) == 0 {
		return c.Conn.Write(p)
	}
	c.done = true
	if p[0] != c.lead {
		return 0, fmt.Errorf("%w: the TLS client's first record is of type %#x, not %#x as announced", ErrProtocol, p[0], c.lead)
	}
	n, err := c.Conn.Write(p[1:])
	return n + 1, err
}

// speakFirst writes the lead byte to raw and returns the conn the TLS
// client is to write through.
func speakFirst(raw net.Conn) (*leadConn, error) {
	if _, err := raw.Write([]byte{recordTypeHandshake}); err != nil {
		return nil, err
	}
	return &leadConn{Conn: raw, lead: recordTypeHandshake}, nil
}
