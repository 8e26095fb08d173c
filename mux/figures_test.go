package mux

import (
	"context"
	"testing"
	"time"
)

// Figures, read without a lock, agree with the locked accessors, and
// count streams by priority as they open, change priority and close.
func TestFiguresAgree(t *testing.T) {
	cc, sc := tcpPair(t)
	release := make(chan struct{})
	p := newPair(t, cc, sc, testConfig(), testConfig(), nil, holdRoute(release, false))
	check := func(what string, client, server [NumPriorities]int) {
		t.Helper()
		// Bytes still moving (window updates, resets' answers) have
		// arrived once a ping each way is answered.
		for _, s := range []*Session{p.client, p.server} {
			if _, err := s.PingContext(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for i, s := range []*Session{p.client, p.server} {
			f := s.Figures()
			in, out := s.StreamCounts()
			if f.Inbound != in || f.Outbound != out {
				t.Errorf("%s: figures %+v, locked: %d in, %d out", what, f, in, out)
			}
			if want := [2][NumPriorities]int{client, server}[i]; f.ByPriority != want || s.StreamsByPriority() != want {
				t.Errorf("%s: by priority %v (figures), %v (StreamsByPriority), want %v", what, f.ByPriority, s.StreamsByPriority(), want)
			}
			if f.BytesIn != s.BytesIn() || f.BytesOut != s.BytesOut() {
				t.Errorf("%s: bytes %d/%d, locked %d/%d", what, f.BytesIn, f.BytesOut, s.BytesIn(), s.BytesOut())
			}
		}
	}
	var streams []*Stream
	for _, prio := range []Priority{PriorityLow, PriorityHigh, PriorityCritical} {
		s, err := p.client.OpenStream(context.Background(), "hold", prio)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	// Streams counts a stream once its header is read and its handler
	// about to run; Handlers counts it from before the header.
	waitFor(t, 10*time.Second, "the handlers", func() bool { return p.server.Figures().Streams == 3 })
	check("three open", [NumPriorities]int{1, 0, 1, 1}, [NumPriorities]int{1, 0, 1, 1})
	if err := streams[0].SetPriority(PriorityNormal); err != nil {
		t.Fatal(err)
	}
	check("after SetPriority", [NumPriorities]int{0, 1, 1, 1}, [NumPriorities]int{1, 0, 1, 1}) // the remote keeps the header's
	if f := p.client.Figures(); f.Streams != 3 || f.QueuedWrites != 0 || f.Utilization != 0 {
		t.Errorf("client figures %+v: want 3 streams opened, an empty queue", f)
	}
	close(release)
	for _, s := range streams {
		s.Reset()
	}
	waitFor(t, 10*time.Second, "every stream to go", func() bool {
		in, out := p.server.StreamCounts()
		cin, cout := p.client.StreamCounts()
		return in+out+cin+cout == 0
	})
	check("all closed", [NumPriorities]int{}, [NumPriorities]int{})
}
