//go:build !linux

package transport

import "net"

// setNotSentLowat does nothing off Linux: see Config.NotSentLowat.
func setNotSentLowat(net.Conn, int) error { return nil }
