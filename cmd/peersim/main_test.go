package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunDefaultRing(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, 5, 20, 512, time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	// Every node has its two ring neighbours, connected, with one stream
	// of ours and one of theirs open on each link.
	rows := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[3] == "connected" {
			rows++
			if f[5] != "2" {
				t.Errorf("row %q: %s streams, want 2", line, f[5])
			}
		}
	}
	if rows != 10 {
		t.Errorf("%d connected rows, want 10:\n%s", rows, text)
	}
	if !strings.Contains(text, "200 messages of 512 B echoed") {
		t.Errorf("summary does not count 200 messages:\n%s", text)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run(&bytes.Buffer{}, 1, 1, 1, time.Second); err == nil || !strings.Contains(err.Error(), "-nodes") {
		t.Errorf("run with 1 node: %v, want an error naming -nodes", err)
	}
}
