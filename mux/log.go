package mux

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// yamuxLogger adapts yamux's Logger (Print, Printf, Println) to zerolog.
//
// Levels: "[ERR]" lines become Warn, or Debug when they are the noise of
// a connection being torn down; "[WARN]" lines become Warn, except those
// that are expected after a peerlink reset (frames arriving for a stream
// that was reset), which become Debug; everything else is Debug.
type yamuxLogger struct {
	log      zerolog.Logger // with component=yamux and peer=...
	teardown *atomic.Bool   // set once the session is closing or closed
}

func (l *yamuxLogger) Print(v ...any) {
	if l.enabled() {
		l.emit(fmt.Sprint(v...))
	}
}

func (l *yamuxLogger) Printf(format string, v ...any) {
	if l.enabled() {
		l.emit(fmt.Sprintf(format, v...))
	}
}

func (l *yamuxLogger) Println(v ...any) {
	if l.enabled() {
		l.emit(fmt.Sprintln(v...))
	}
}

// enabled skips formatting when nothing at Warn or below can be logged
// (zerolog.Nop, the default): some lines come once per reset stream.
func (l *yamuxLogger) enabled() bool {
	return l.log.GetLevel() <= zerolog.WarnLevel && zerolog.GlobalLevel() <= zerolog.WarnLevel
}

func (l *yamuxLogger) emit(msg string) {
	msg = strings.TrimSpace(msg)
	level := zerolog.DebugLevel
	switch {
	case strings.HasPrefix(msg, "[ERR]"):
		msg = strings.TrimSpace(msg[len("[ERR]"):])
		if !l.teardown.Load() && !isTeardownNoise(msg) {
			level = zerolog.WarnLevel
		}
	case strings.HasPrefix(msg, "[WARN]"):
		msg = strings.TrimSpace(msg[len("[WARN]"):])
		if !isAfterResetNoise(msg) {
			level = zerolog.WarnLevel
		}
	}
	msg = strings.TrimPrefix(msg, "yamux: ")
	l.log.WithLevel(level).Msg(msg)
}

// isTeardownNoise reports an error line that only says the link went away.
func isTeardownNoise(msg string) bool {
	for _, s := range [...]string{
		"closed pipe",
		"use of closed network connection",
		"broken pipe",
		"connection reset by peer",
		"EOF",
		"session shutdown",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isAfterResetNoise reports a warning that follows a stream reset in the
// normal course: after a RST the remote forgets the stream, and the FIN
// that follows it (or data already in flight) finds no stream.
func isAfterResetNoise(msg string) bool {
	return strings.Contains(msg, "frame for missing stream") ||
		strings.Contains(msg, "Discarding data for stream")
}
