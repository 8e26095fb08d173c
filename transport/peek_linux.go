//go:build linux

package transport

import (
	"net"
	"syscall"
)

// hasUnread reports whether bytes wait unread in c's socket receive
// queue, without taking them and without blocking (MSG_PEEK |
// MSG_DONTWAIT). False if c has no socket or on any error, a closed
// socket included. It does not take the conn's read lock (Control, not
// Read), so it returns at once while a Read is blocked on c.
func hasUnread(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		buf  [1]byte
		n    int
		rerr error
	)
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return rerr == nil && n > 0
}
