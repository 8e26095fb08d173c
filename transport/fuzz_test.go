package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// countingReader counts the bytes a parser consumed.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// oneByteReader returns at most one byte per Read, to exercise short
// reads as TLS records and pipes produce them.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func FuzzReadVerdict(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, split := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(data)
			if split {
				r = oneByteReader{r}
			}
			cr := &countingReader{r: r}
			code, reason, err := readVerdict(cr)
			if cr.n > maxVerdictLen {
				t.Fatalf("read %d bytes, max %d", cr.n, maxVerdictLen)
			}
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				continue
			}
			if n := verdictHeaderLen + int(data[2]); cr.n != n {
				t.Fatalf("consumed %d bytes, verdict is %d", cr.n, n)
			}
			if code == 0 && reason != "" {
				t.Fatalf("accepting verdict with reason %q", reason)
			}
			if len(reason) > 3*maxReason {
				t.Fatalf("reason of %d bytes", len(reason))
			}
			if code != 0 && bytes.Equal([]byte(reason), data[3:cr.n]) {
				// A clean reason re-encodes to the input.
				if got := appendVerdict(nil, code, reason); !bytes.Equal(got, data[:cr.n]) {
					t.Fatalf("re-encoded %q, input %q", got, data[:cr.n])
				}
			}
		}
	})
}

func FuzzMemoryHello(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, split := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(data)
			if split {
				r = oneByteReader{r}
			}
			cr := &countingReader{r: r}
			network, id, err := readHello(cr)
			if cr.n > maxHelloLen {
				t.Fatalf("read %d bytes, max %d", cr.n, maxHelloLen)
			}
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				continue
			}
			if checkNetwork(network) != nil || id.IsZero() {
				t.Fatalf("accepted network %q id %s", network, id)
			}
			if got := appendHello(nil, network, id); !bytes.Equal(got, data[:cr.n]) {
				t.Fatalf("re-encoded %q, input %q", got, data[:cr.n])
			}
		}
	})
}
