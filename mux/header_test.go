package mux

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	for _, proto := range []string{"a", "/peerlink/blocks/1.0.0", strings.Repeat("x", MaxProtocolLen)} {
		for p := PriorityLow; p <= PriorityCritical; p++ {
			b := appendStreamHeader(nil, p, proto)
			b = append(b, "payload"...)
			var buf [maxStreamHeader]byte
			r := bytes.NewReader(b)
			gp, gproto, err := readStreamHeader(r, &buf)
			if err != nil || gp != p || gproto != proto {
				t.Fatalf("read %v %q %v", gp, gproto, err)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "payload" {
				t.Fatalf("read past the header: rest %q", rest)
			}
		}
	}
}

func TestReadStreamHeaderErrors(t *testing.T) {
	var buf [maxStreamHeader]byte
	if _, _, err := readStreamHeader(bytes.NewReader(nil), &buf); err != errNoHeader {
		t.Errorf("empty: %v", err)
	}
	for _, b := range [][]byte{{1}, {1, 1, 4, 'a', 'b'}, {0, 1, 1, 'a'}, {1, 4, 1, 'a'}, {1, 1, 129}, {1, 1, 1, '\n'}} {
		_, _, err := readStreamHeader(bytes.NewReader(b), &buf)
		if !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

// FuzzStreamHeader: the acceptor parses headers from the network.
func FuzzStreamHeader(f *testing.F) {
	f.Add(appendStreamHeader(nil, PriorityHigh, "/peerlink/ping/1"))
	f.Add([]byte{1, 3, 1, '!', 'x'})
	f.Add([]byte{1, 0, 128})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		prio, proto, n, err := parseStreamHeader(data)
		var buf [maxStreamHeader]byte
		r := bytes.NewReader(data)
		rprio, rproto, rerr := readStreamHeader(r, &buf)
		if err != nil {
			if rerr == nil {
				t.Fatalf("parse failed (%v) but read succeeded", err)
			}
			if len(data) > 0 && !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("error does not wrap ErrMalformedHeader: %v", err)
			}
			return
		}
		if rerr != nil || rprio != prio || rproto != proto {
			t.Fatalf("parse %v %q, read %v %q %v", prio, proto, rprio, rproto, rerr)
		}
		if consumed := len(data) - r.Len(); consumed != n {
			t.Fatalf("read consumed %d bytes, header is %d", consumed, n)
		}
		if !prio.Valid() || ValidateProtocol(proto) != nil {
			t.Fatalf("accepted invalid %v %q", prio, proto)
		}
		if enc := appendStreamHeader(nil, prio, proto); !bytes.Equal(enc, data[:n]) {
			t.Fatalf("re-encoded %x, input %x", enc, data[:n])
		}
	})
}
