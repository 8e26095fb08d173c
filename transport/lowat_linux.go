//go:build linux

package transport

import (
	"net"
	"os"
	"syscall"
)

// tcpNotSentLowat is TCP_NOTSENT_LOWAT (linux/tcp.h; Linux 3.12 on),
// which package syscall does not define on every architecture.
const tcpNotSentLowat = 0x19

// setNotSentLowat sets TCP_NOTSENT_LOWAT on c's socket, if c has one.
func setNotSentLowat(c net.Conn, v int) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat, v)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt TCP_NOTSENT_LOWAT", serr)
}
