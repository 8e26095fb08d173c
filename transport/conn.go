package transport

import (
	"crypto/tls"
	"net"

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
}

func (l *linkInfo) LocalPeer() peer.ID   { return l.local }
func (l *linkInfo) RemotePeer() peer.ID  { return l.remote }
func (l *linkInfo) Direction() Direction { return l.dir }

// tlsConn is a TCP link. It embeds the concrete *tls.Conn, so Read and
// Write are direct calls with nothing in between.
type tlsConn struct {
	*tls.Conn
	linkInfo
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
