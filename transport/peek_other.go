//go:build !linux

package transport

import "net"

// hasUnread reports false off Linux: a pending socket counts as silent
// until its handshake goroutine has read its first byte.
func hasUnread(net.Conn) bool { return false }
