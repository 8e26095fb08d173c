package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
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

// closeHook runs a function once, after the first Close of a Conn: the
// listener's count of the links from an address (Config.MaxInboundPerIP)
// is released there, exactly once however often and by whom the Conn is
// closed.
type closeHook struct{ f atomic.Pointer[func()] }

func (h *closeHook) setCloseHook(f func()) { h.f.Store(&f) }

func (h *closeHook) runCloseHook() {
	if f := h.f.Swap(nil); f != nil {
		(*f)()
	}
}

// closeHooker is implemented by this package's Conns.
type closeHooker interface{ setCloseHook(func()) }

// closeNotifyTimeout bounds how long Close tries to send close_notify
// before it closes the socket without it. A healthy socket takes the
// 24-byte alert at once: a write returns as soon as the kernel has room,
// without waiting for the network. Only a full send buffer makes it wait,
// and on a live link the remote's ACKs free room within about a round
// trip; 200 ms covers the round trip of nearly every terrestrial path. A
// socket that takes nothing for that long belongs to a remote that has
// stopped reading (or a dead path), which a close_notify would not reach
// anyway. Closing such a link, or many at once at shutdown, stays well
// under a second; crypto/tls alone would wait 5 s.
const closeNotifyTimeout = 200 * time.Millisecond

// tlsConn is a TCP link. It embeds the concrete *tls.Conn, so Read is a
// direct call; Write gathers the records of a large write into one socket
// write (see recordBatcher). Close takes at most closeNotifyTimeout (see
// closeTLS).
type tlsConn struct {
	*tls.Conn
	linkInfo
	closeHook
	batch   *recordBatcher
	writeMu sync.Mutex // one batch at a time
}

func newTLSConn(tc *tls.Conn, batch *recordBatcher, info linkInfo) *tlsConn {
	return &tlsConn{Conn: tc, linkInfo: info, batch: batch}
}

func (c *tlsConn) Write(p []byte) (int, error) {
	if len(p) <= minBatchWrite {
		n, err := c.Conn.Write(p) // one record: nothing to gather
		return n, c.closedErr(err)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.batch.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.batch.flush(); err == nil && ferr != nil {
		// crypto/tls counted the records as written; they were not.
		return 0, c.closedErr(ferr)
	}
	return n, c.closedErr(err)
}

// closedErr reports a write that Close's deadline cut short as the
// closing it is, not as a timeout a caller might retry.
func (c *tlsConn) closedErr(err error) error {
	if err == nil || !c.batch.closing.Load() || !isTimeout(err) {
		return err
	}
	return fmt.Errorf("transport: write aborted by Close: the socket did not take it within %v (%v): %w",
		closeNotifyTimeout, err, net.ErrClosed)
}

// Close sends close_notify if the socket takes it within
// closeNotifyTimeout, then closes the socket; see closeTLS.
func (c *tlsConn) Close() error {
	err := closeTLS(c.Conn, c.batch)
	c.runCloseHook()
	return err
}

// closeTLS closes tc, whose transport is b, in at most about
// closeNotifyTimeout whatever the socket does. Left to itself,
// tls.Conn.Close gives close_notify 5 s, and the alert queues behind any
// batch write blocked in the socket (b.mu), which nothing else would cut
// short. So b first bounds every socket write to closeNotifyTimeout from
// now, the blocked one included; then tls.Conn.Close sends the alert
// under that bound and closes the socket, which fails every Read and
// Write still blocked on it. On a healthy link the alert is sent and the
// remote reads a clean EOF. Concurrent calls are safe: the later ones
// return net.ErrClosed at once.
func closeTLS(tc *tls.Conn, b *recordBatcher) error {
	b.startClose()
	return tc.Close()
}

// plainConn is a link over any other net.Conn (the memory transport's).
type plainConn struct {
	net.Conn
	linkInfo
	closeHook
}

// Close closes the conn.
func (c *plainConn) Close() error {
	err := c.Conn.Close()
	c.runCloseHook()
	return err
}

var (
	_ TLSConn     = (*tlsConn)(nil)
	_ Conn        = (*plainConn)(nil)
	_ closeHooker = (*tlsConn)(nil)
	_ closeHooker = (*plainConn)(nil)
)
