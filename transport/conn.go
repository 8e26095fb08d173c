package transport

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// TLSConn is implemented by the Conns of the TCP transport: a *tls.Conn
// with the link's peers. ConnectionState reports the negotiated TLS
// parameters and the remote's certificate.
type TLSConn interface {
	Conn
	ConnectionState() tls.ConnectionState
}

// linkInfo is what a Conn knows beyond its net.Conn.
type linkInfo struct {
	local, remote peer.ID
	dir           Direction
	rtt           time.Duration // set before the Conn is handed out
}

func (l *linkInfo) LocalPeer() peer.ID              { return l.local }
func (l *linkInfo) RemotePeer() peer.ID             { return l.remote }
func (l *linkInfo) Direction() Direction            { return l.dir }
func (l *linkInfo) HandshakeRTT() time.Duration     { return l.rtt }
func (l *linkInfo) setHandshakeRTT(d time.Duration) { l.rtt = d }

// rttSetter is implemented by this package's Conns.
type rttSetter interface{ setHandshakeRTT(time.Duration) }

// tlsConn is a TCP link. It embeds the concrete *tls.Conn, so Read is a
// direct call; Write gathers the records of a large write into one socket
// write (see recordBatcher).
type tlsConn struct {
	*tls.Conn
	linkInfo
	batch   *recordBatcher
	writeMu sync.Mutex // one batch at a time
}

func newTLSConn(tc *tls.Conn, batch *recordBatcher, info linkInfo) *tlsConn {
	return &tlsConn{Conn: tc, linkInfo: info, batch: batch}
}

func (c *tlsConn) Write(p []byte) (int, error) {
	if len(p) <= minBatchWrite {
		return c.Conn.Write(p) // one record: nothing to gather
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.batch.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.batch.flush(); err == nil && ferr != nil {
		// crypto/tls counted the records as written; they were not.
		return 0, ferr
	}
	return n, err
}

// plainConn is a link over any other net.Conn (the memory transport's).
type plainConn struct {
	net.Conn
	linkInfo
}

var (
	_ TLSConn = (*tlsConn)(nil)
	_ Conn    = (*plainConn)(nil)
)
