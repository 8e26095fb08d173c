//go:build linux

package transport

import (
	"net"
	"syscall"
	"testing"
)

// notSentLowat reads TCP_NOTSENT_LOWAT back from a TCP link's socket.
func notSentLowat(t *testing.T, c Conn) int {
	t.Helper()
	raw := c.(*tlsConn).Conn.NetConn().(*recordBatcher).Conn.(*net.TCPConn)
	rc, err := raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		v    int
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt TCP_NOTSENT_LOWAT: %v", gerr)
	}
	return v
}

// kernelDefault stands for "0 or -1" in TestNotSentLowat.
const kernelDefault = -2

func TestNotSentLowat(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  int
		want int
	}{
		{"default", 0, DefaultNotSentLowat},
		{"32KiB", 32 << 10, 32 << 10},
		// Never set: the kernel's own, which it reports as 0 on a
		// connected socket and as its sysctl (by default UINT_MAX,
		// read as -1) on an accepted one.
		{"off", -1, kernelDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, ac := dialPair(t, tcpEnv{}, func(c *Config) { c.NotSentLowat = tc.set })
			for _, end := range []struct {
				name string
				c    Conn
			}{{"dialed", dc}, {"accepted", ac}} {
				got := notSentLowat(t, end.c)
				if tc.want == kernelDefault && (got == 0 || got == -1) {
					continue
				}
				if got != tc.want {
					t.Errorf("%s socket: TCP_NOTSENT_LOWAT %d, want %d", end.name, got, tc.want)
				}
			}
		})
	}
}
