package transport

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"
)

// The refusal marker: what a listener writes, in plaintext, to a socket
// it refuses before any handshake, just before it closes it:
//
//	[4] "PLNK"
//	[1] code: 1 listener busy (no room for another pending handshake),
//	          2 too many links from the dialer's address
//
// A TLS dialer reads these five bytes as the header of the listener's
// first record: crypto/tls fails with a tls.RecordHeaderError holding
// them, which the dialer maps to ErrListenerBusy or ErrAddrConnLimit. A
// memory dialer reads them where it expects the header of the
// listener's hello. No TLS record or memory hello starts with "PLNK".
const (
	markerMagic = "PLNK"
	markerLen   = len(markerMagic) + 1

	markerBusy      byte = 1
	markerAddrLimit byte = 2
)

// maxRefusers bounds the refusals that write the marker at once (each
// takes one goroutine; off TCP one more to drain the socket); sockets
// refused beyond that are closed without it.
const maxRefusers = 32

// refuseLinger bounds one refusal: writing the marker, then waiting for
// the dialer to close.
const refuseLinger = time.Second

// parseMarker returns the code of a refusal marker.
func parseMarker(b []byte) (byte, bool) {
	if len(b) < markerLen || string(b[:len(markerMagic)]) != markerMagic {
		return 0, false
	}
	return b[len(markerMagic)], true
}

// ListenerRefusedError is what a dial returns when the listener refused
// its socket before the handshake (see the package documentation's
// refusal marker). It wraps ErrListenerBusy, or ErrAddrConnLimit if
// the dialer's address has as many links to the listener as it allows.
type ListenerRefusedError struct {
	Addr string // the listener's address
	Code byte   // the marker's code: 1 busy, 2 address limit
}

// Error reads like "transport: listener 127.0.0.1:4001 busy: too many
// pending handshakes, try again later".
func (e *ListenerRefusedError) Error() string {
	switch e.Code {
	case markerBusy:
		return "transport: listener " + e.Addr + " busy: too many pending handshakes, try again later"
	case markerAddrLimit:
		return "transport: listener " + e.Addr + " refused the connection: too many connections from our address"
	}
	return "transport: listener " + e.Addr + " refused the connection before the handshake (code " +
		strconv.Itoa(int(e.Code)) + "), try again later"
}

// Unwrap returns ErrAddrConnLimit for code 2, else ErrListenerBusy.
func (e *ListenerRefusedError) Unwrap() error {
	if e.Code == markerAddrLimit {
		return ErrAddrConnLimit
	}
	return ErrListenerBusy
}

func listenerRefused(remote net.Addr, code byte) error {
	addr := "?"
	if remote != nil {
		addr = remote.String()
	}
	return &ListenerRefusedError{Addr: addr, Code: code}
}

// refuse hands raw to a refuser that writes the marker with code and
// closes it; if maxRefusers are at work, it closes raw at once. It never
// blocks.
func (l *listener) refuse(raw net.Conn, code byte) {
	select {
	case l.refusers <- struct{}{}:
	default:
		raw.Close()
		return
	}
	l.wg.Go(func() {
		defer func() { <-l.refusers }()
		l.sendMarker(raw, code)
	})
}

// sendMarker writes the marker and closes the socket so that the marker
// reaches the dialer. Closing a TCP socket whose receive queue holds
// unread bytes (here the dialer's ClientHello) sends a reset, which can
// destroy the marker before the dialer reads it. So over TCP, after the
// marker, the write side is shut (FIN) and what the dialer sent is read
// and dropped until it closes its end (it does as soon as it has read
// the marker) or refuseLinger has passed; only then is the socket
// closed. A conn with no CloseWrite (net.Pipe, whose writes complete
// only once read; a RawConnWrapper's) is closed once the marker is
// written; meanwhile a second goroutine drains it, which lets a pipe's
// dialer finish writing its hello and go on to read.
func (l *listener) sendMarker(raw net.Conn, code byte) {
	conn := raw
	if l.up.wrapRaw != nil {
		conn = l.up.wrapRaw(raw)
	}
	stop := context.AfterFunc(l.ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(refuseLinger))
	marker := [markerLen]byte{'P', 'L', 'N', 'K', code}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if _, err := conn.Write(marker[:]); err == nil && cw.CloseWrite() == nil {
			_, _ = io.Copy(io.Discard, conn)
		}
		conn.Close()
		return
	}
	// The drain ends as soon as conn is closed; the refuser's place is
	// not held for it (the listener's Close waits for it).
	l.wg.Go(func() { _, _ = io.Copy(io.Discard, conn) })
	_, _ = conn.Write(marker[:])
	conn.Close()
}
