package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// writeRecorder is a link that records every Write.
type writeRecorder struct {
	net.Conn // nil: only Write is used
	writes   [][]byte
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), b...))
	return len(b), nil
}

func frame(typ byte, flags uint16, id, length uint32) []byte {
	h := make([]byte, frameHeaderLen)
	h[0], h[1] = frameVersion, typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

func sizes(ws [][]byte) []int {
	var s []int
	for _, w := range ws {
		s = append(s, len(w))
	}
	return s
}

func TestFrameConnJoinsHeaderAndBody(t *testing.T) {
	rec := &writeRecorder{}
	fc := newFrameConn(rec, nil)
	body := []byte("hello")
	// yamux's sendLoop: header, then body.
	fc.Write(frame(typeData, 0, 1, 5))
	if len(rec.writes) != 0 {
		t.Fatal("data header written before its body")
	}
	fc.Write(body)
	// Control frames and empty data frames pass through.
	fc.Write(frame(typeWindowUpdate, 1, 3, 0))
	fc.Write(frame(typeData, flagFIN, 3, 0))
	fc.Write(frame(2, 1, 0, 9)) // ping
	if got, want := sizes(rec.writes), []int{17, 12, 12, 12}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("write sizes %v, want %v", got, want)
	}
	if !bytes.Equal(rec.writes[0], append(frame(typeData, 0, 1, 5), body...)) {
		t.Errorf("joined write %x", rec.writes[0])
	}
	if fc.out.Load() != 17+36 {
		t.Errorf("bytes out %d", fc.out.Load())
	}

	// A body larger than the join buffer: header + start in one write
	// (exactly one TLS record's worth), the rest after.
	rec.writes = nil
	big := bytes.Repeat([]byte{7}, 100_000)
	fc.Write(frame(typeData, 0, 1, uint32(len(big))))
	fc.Write(big)
	if got := sizes(rec.writes); len(got) != 2 || got[0] != joinBufSize || got[0]+got[1] != 12+len(big) {
		t.Fatalf("large frame written as %v", got)
	}
	if !bytes.Equal(append(rec.writes[0][12:], rec.writes[1]...), big) {
		t.Error("large body corrupted")
	}

	// A body of whole TLS records: joining saves no record, so the header
	// goes alone and nothing is copied.
	rec.writes = nil
	fc.Write(frame(typeData, 0, 1, 64<<10))
	fc.Write(make([]byte, 64<<10))
	if got := sizes(rec.writes); fmt.Sprint(got) != fmt.Sprint([]int{12, 64 << 10}) {
		t.Fatalf("64 KiB frame written as %v", got)
	}
}

func TestJoinSaves(t *testing.T) {
	records := func(n int) int { return (n + tlsRecord - 1) / tlsRecord }
	for n := 1; n <= 5*tlsRecord; n++ {
		joined := records(n + frameHeaderLen)
		apart := 1 + records(n)
		// Header plus the first joinBufSize-12 body bytes, then the rest.
		k := min(n, joinBufSize-frameHeaderLen)
		split := 1 + records(n-k)
		if split != joined {
			t.Fatalf("n=%d: split join takes %d records, whole join %d", n, split, joined)
		}
		if joinSaves(n) != (joined < apart) {
			t.Fatalf("n=%d: joinSaves %v, records joined %d apart %d", n, joinSaves(n), joined, apart)
		}
	}
}

func TestFrameConnInjectRST(t *testing.T) {
	rec := &writeRecorder{}
	fc := newFrameConn(rec, nil)
	rst := frame(typeWindowUpdate, flagRST, 5, uint32(ResetStreamLimit))

	// At a boundary: written at once.
	if err := fc.injectRST(5, ResetStreamLimit); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 || !bytes.Equal(rec.writes[0], rst) {
		t.Fatalf("writes %x, want %x", rec.writes, rst)
	}

	// Between a data header and its body: queued until after the body.
	rec.writes = nil
	fc.Write(frame(typeData, 0, 1, 3))
	if err := fc.injectRST(5, ResetStreamLimit); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 0 {
		t.Fatal("RST written inside a frame")
	}
	fc.Write([]byte("abc"))
	if len(rec.writes) != 2 || len(rec.writes[0]) != 15 || !bytes.Equal(rec.writes[1], rst) {
		t.Fatalf("writes %x", rec.writes)
	}
	if got := fc.rstSent[ResetStreamLimit].Load(); got != 2 {
		t.Errorf("counted %d RSTs sent", got)
	}
	// yamux's own RST (length 0) is counted as ResetUnknown.
	fc.Write(frame(typeWindowUpdate, flagRST, 9, 0))
	if got := fc.rstSent[ResetUnknown].Load(); got != 1 {
		t.Errorf("counted %d plain RSTs", got)
	}

	// A body that does not match its header: no more injection.
	fc.Write(frame(typeData, 0, 1, 3))
	fc.Write([]byte("abcd"))
	if err := fc.injectRST(5, ResetApplication); !errors.Is(err, errInjectUnsafe) {
		t.Fatalf("inject after out-of-step write: %v", err)
	}
}

func TestFrameConnNoAllocs(t *testing.T) {
	fc := newFrameConn(&writeRecorder{}, nil)
	rec := fc.Conn.(*writeRecorder)
	hdr := frame(typeData, 0, 1, 1024)
	body := make([]byte, 1024)
	allocs := testing.AllocsPerRun(1000, func() {
		fc.Write(hdr)
		fc.Write(body)
		rec.writes = rec.writes[:0]
	})
	// The recorder itself copies each write (1 alloc); the frame conn adds none.
	if allocs > 1 {
		t.Errorf("%v allocs per joined frame", allocs)
	}
}

type event struct {
	id    uint32
	flags uint16
	code  uint32
}

// refParse is a straightforward whole-buffer parse of yamux frames: the
// events the tracker must report, however the bytes are split.
func refParse(b []byte) []event {
	var evs []event
	for len(b) >= frameHeaderLen {
		h := b[:frameHeaderLen]
		b = b[frameHeaderLen:]
		if h[0] != 0 || h[1] > 3 {
			break
		}
		flags := binary.BigEndian.Uint16(h[2:4])
		id := binary.BigEndian.Uint32(h[4:8])
		length := binary.BigEndian.Uint32(h[8:12])
		if (h[1] == 0 || h[1] == 1) && flags&(flagFIN|flagRST) != 0 {
			var code uint32
			if h[1] == 1 && flags&flagRST != 0 {
				code = length
			}
			evs = append(evs, event{id, flags, code})
		}
		if h[1] == 0 {
			if uint64(length) >= uint64(len(b)) {
				break
			}
			b = b[length:]
		}
	}
	return evs
}

// feedChunks feeds b to a new tracker in chunks of the given sizes (0
// counts as 1; the last size repeats).
func feedChunks(b []byte, chunks []byte) []event {
	var evs []event
	tr := frameTracker{onFrame: func(id uint32, flags uint16, code uint32) {
		evs = append(evs, event{id, flags, code})
	}}
	for i := 0; len(b) > 0; i++ {
		k := 1
		if len(chunks) > 0 {
			k = max(1, int(chunks[min(i, len(chunks)-1)]))
		}
		k = min(k, len(b))
		tr.feed(b[:k])
		b = b[k:]
	}
	return evs
}

func sampleFrames() []byte {
	var b []byte
	b = append(b, frame(typeWindowUpdate, 1, 1, 0)...) // SYN
	b = append(b, frame(typeData, 0, 1, 20)...)
	b = append(b, bytes.Repeat([]byte{0xff}, 20)...) // body that looks like nothing
	b = append(b, frame(typeWindowUpdate, flagRST, 1, 1)...)
	b = append(b, frame(2, 1, 0, 77)...) // ping
	b = append(b, frame(typeData, flagFIN, 3, 4)...)
	b = append(b, "abcd"...)
	b = append(b, frame(typeWindowUpdate, flagFIN, 5, 0)...)
	b = append(b, frame(typeWindowUpdate, flagRST, 7, 0)...)
	b = append(b, frame(typeWindowUpdate, flagRST|flagFIN, 9, 4)...)
	b = append(b, frame(3, 0, 0, 0)...) // go away
	return b
}

func TestFrameTracker(t *testing.T) {
	b := sampleFrames()
	want := []event{{1, flagRST, 1}, {3, flagFIN, 0}, {5, flagFIN, 0}, {7, flagRST, 0}, {9, flagRST | flagFIN, 4}}
	if got := refParse(b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reference parse %v, want %v", got, want)
	}
	for size := 1; size <= len(b); size++ {
		if got := feedChunks(b, []byte{byte(size)}); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("chunks of %d: %v, want %v", size, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		chunks := make([]byte, 40)
		for i := range chunks {
			chunks[i] = byte(1 + rng.IntN(30))
		}
		if got := feedChunks(b, chunks); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("chunks %v: %v, want %v", chunks, got, want)
		}
	}
	// Garbage: tracking stops, quietly, at the first bad header.
	bad := append(frame(typeWindowUpdate, flagFIN, 1, 0), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
	bad = append(bad, frame(typeWindowUpdate, flagRST, 3, 2)...)
	if got := feedChunks(bad, []byte{5}); len(got) != 1 || got[0].id != 1 {
		t.Fatalf("after garbage: %v", got)
	}
}

// FuzzFrameReader: the read-side tracker sees bytes straight from the
// network. Whatever they are and however they are split, it must not
// panic and must report exactly what a whole-buffer parse finds.
func FuzzFrameReader(f *testing.F) {
	f.Add(sampleFrames(), []byte{1})
	f.Add(sampleFrames(), []byte{5, 12, 7, 30})
	f.Add(frame(typeData, 0, 1, 0xffffffff), []byte{3})
	f.Add([]byte{1, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		want := refParse(data)
		got := feedChunks(data, chunks)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("chunked %v, whole %v", got, want)
		}
	})
}

// parseData splits a byte stream of data frames into their stream IDs
// and bodies.
func parseData(t *testing.T, b []byte) (ids []uint32, bodies [][]byte) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < frameHeaderLen || b[1] != typeData {
			t.Fatalf("not a data frame: %x", b[:min(len(b), frameHeaderLen)])
		}
		n := int(binary.BigEndian.Uint32(b[8:12]))
		ids = append(ids, binary.BigEndian.Uint32(b[4:8]))
		bodies = append(bodies, b[frameHeaderLen:frameHeaderLen+n])
		b = b[frameHeaderLen+n:]
	}
	return ids, bodies
}

func TestFrameConnWriteData(t *testing.T) {
	body := make([]byte, 10*fullChunk)
	for i := range body {
		body[i] = byte(i * 7)
	}
	hdr := []byte{1, 2, 4, 's', 'i', 'n', 'k'}
	for _, c := range []struct {
		name   string
		prefix []byte
		body   []byte
		chunk  int
		writes []int // sizes of the link writes
		frames []int // body sizes of the frames
	}{
		{"small", hdr, body[:250], 100, []int{3*12 + 257}, []int{100, 100, 57}},
		{"header only", hdr, nil, fullChunk, []int{12 + 7}, []int{7}},
		// Four default chunks are one 64 KiB batch; each frame is a whole
		// number of TLS records (one).
		{"batched", nil, body, fullChunk, []int{64 << 10, 64 << 10, 2 * DefaultChunkSize}, []int{fullChunk, fullChunk, fullChunk, fullChunk, fullChunk, fullChunk, fullChunk, fullChunk, fullChunk, fullChunk}},
		// A frame larger than a batch: header and start joined (one TLS
		// record), then the rest.
		{"large", hdr, body[:100_000], 200_000, []int{joinBufSize, 12 + 7 + 100_000 - joinBufSize}, []int{100_007}},
		// A large frame of whole records: the header goes alone.
		{"large records", nil, body[:5*tlsRecord], 200_000, []int{12, 5 * tlsRecord}, []int{5 * tlsRecord}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &writeRecorder{}
			fc := newFrameConn(rec, nil)
			fc.lock()
			err := fc.writeDataLocked(9, c.prefix, c.body, c.chunk)
			fc.unlock()
			if err != nil {
				t.Fatal(err)
			}
			if got := sizes(rec.writes); fmt.Sprint(got) != fmt.Sprint(c.writes) {
				t.Errorf("link writes %v, want %v", got, c.writes)
			}
			ids, bodies := parseData(t, bytes.Join(rec.writes, nil))
			var got []int
			for i, b := range bodies {
				if ids[i] != 9 {
					t.Errorf("frame for stream %d", ids[i])
				}
				got = append(got, len(b))
			}
			if fmt.Sprint(got) != fmt.Sprint(c.frames) {
				t.Errorf("frames %v, want %v", got, c.frames)
			}
			if want := append(append([]byte(nil), c.prefix...), c.body...); !bytes.Equal(bytes.Join(bodies, nil), want) {
				t.Error("bodies do not add up to prefix and body")
			}
			if fc.dataOut.Load() != uint64(len(c.prefix)+len(c.body)) {
				t.Errorf("dataOut %d", fc.dataOut.Load())
			}
		})
	}
}

// TestFrameConnWriteDataKeepsBoundary: a data frame written while one of
// yamux's is between its header and body goes after that body, whatever
// the timing.
func TestFrameConnWriteDataKeepsBoundary(t *testing.T) {
	rec := &writeRecorder{}
	fc := newFrameConn(rec, nil)
	fc.Write(frame(typeData, 0, 1, 3)) // held back for its body
	done := make(chan error, 1)
	go func() {
		fc.lock()
		done <- fc.writeDataLocked(5, nil, []byte("xy"), 100)
		fc.unlock()
	}()
	fc.Write([]byte("abc"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ids, bodies := parseData(t, bytes.Join(rec.writes, nil))
	if fmt.Sprint(ids) != "[1 5]" || string(bodies[0]) != "abc" || string(bodies[1]) != "xy" {
		t.Errorf("frames %v %q", ids, bodies)
	}
}
