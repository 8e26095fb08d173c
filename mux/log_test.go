package mux

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
)

func TestYamuxLogger(t *testing.T) {
	var buf bytes.Buffer
	var teardown atomic.Bool
	l := &yamuxLogger{
		log:      zerolog.New(&buf).With().Str("component", "yamux").Str("peer", "abc").Logger(),
		teardown: &teardown,
	}
	cases := []struct {
		emit  func()
		level string
		msg   string
	}{
		{func() { l.Printf("[ERR] yamux: keepalive failed: %v", "i/o deadline reached") }, "warn", "keepalive failed: i/o deadline reached"},
		{func() { l.Printf("[ERR] yamux: Failed to write header: %v", "io: read/write on closed pipe") }, "debug", "Failed to write header: io: read/write on closed pipe"},
		{func() { l.Printf("[WARN] yamux: backlog exceeded, forcing connection reset") }, "warn", "backlog exceeded, forcing connection reset"},
		{func() { l.Printf("[WARN] yamux: frame for missing stream: %v", "Vsn:0") }, "debug", "frame for missing stream: Vsn:0"},
		{func() { l.Printf("[WARN] yamux: Discarding data for stream: %d", 3) }, "debug", "Discarding data for stream: 3"},
		{func() { l.Println("something else") }, "debug", "something else"},
		{func() { teardown.Store(true); l.Print("[ERR] yamux: Invalid protocol version: 9") }, "debug", "Invalid protocol version: 9"},
	}
	for _, c := range cases {
		buf.Reset()
		c.emit()
		var m map[string]string
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", buf.String(), err)
		}
		if m["level"] != c.level || m["message"] != c.msg || m["component"] != "yamux" || m["peer"] != "abc" {
			t.Errorf("got %s, want level %s message %q", strings.TrimSpace(buf.String()), c.level, c.msg)
		}
	}
}
