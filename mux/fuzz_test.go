package mux

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzSessionFrames feeds a server session arbitrary bytes as the
// remote's side of the link: frame sequences of any kind and order. The
// session must not panic, must end or stay within its bounds, and must
// let every goroutine go once closed (TestMain checks for leaks). The
// seed corpus (testdata/fuzz/FuzzSessionFrames) holds the hostile
// sequences of hostile_test.go.
func FuzzSessionFrames(f *testing.F) {
	hdr := appendStreamHeader(nil, PriorityNormal, "echo")
	seed := func(frames ...[]byte) []byte {
		var b []byte
		for _, fr := range frames {
			b = append(b, fr...)
		}
		return b
	}
	f.Add(seed(frame(typeWindowUpdate, flagSYN, 1, 0), frame(typeData, 0, 1, uint32(len(hdr)+3)), hdr, []byte("abc")))
	f.Add(seed(frame(typeWindowUpdate, flagSYN, 1, 0), frame(typeWindowUpdate, flagRST, 1, 2), frame(typeData, 0, 1, 4), []byte("late")))
	f.Add(seed(frame(typePing, flagSYN, 0, 1), frame(typePing, flagSYN, 0, 2), frame(typeGoAway, 0, 0, 0)))
	f.Add(seed(frame(typeWindowUpdate, 0, 1, 0xffffffff), frame(typeData, flagSYN|flagFIN, 3, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		cc, sc := net.Pipe()
		cfg := testConfig()
		cfg.MaxStreams = 8
		cfg.HeaderTimeout = 50 * time.Millisecond
		srv, err := NewSession(sc, testPeer(t, 2), testPeer(t, 1), false, cfg, routeOf(map[string]Handler{"echo": echoHandler}))
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, cc)
			close(drained)
		}()
		_ = cc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = cc.Write(data)
		srv.Close()
		cc.Close()
		<-drained
	})
}
