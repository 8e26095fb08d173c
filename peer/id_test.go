package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// randomIDs returns n distinct non-zero IDs drawn from a seeded generator,
// so that failures repeat. They are random bytes, not real keys: the
// table cannot tell the difference and they are much cheaper to make.
func randomIDs(n int, seed uint64) []ID {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	r := rand.NewChaCha8(s)
	ids := make([]ID, n)
	for i := range ids {
		r.Read(ids[i][:])
	}
	return ids
}

func TestIDTextRoundTrip(t *testing.T) {
	var ones, low, high ID
	for i := range ones {
		ones[i] = 0xff
	}
	low[IDLen-1] = 1
	high[0] = 0x80
	tests := []struct {
		name string
		id   ID
	}{
		{"all ones", ones},
		{"lowest bit", low},
		{"highest bit", high},
		{"random", randomIDs(1, 1)[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.id.String()
			if len(s) != idTextLen {
				t.Fatalf("String() = %q, %d characters, want %d", s, len(s), idTextLen)
			}
			if !strings.HasPrefix(s, tt.id.ShortString()) || len(tt.id.ShortString()) != 10 {
				t.Errorf("ShortString() = %q, want the first 10 characters of %q", tt.id.ShortString(), s)
			}
			for _, text := range []string{s, strings.ToUpper(s)} {
				got, err := ParseID(text)
				if err != nil {
					t.Fatalf("ParseID(%q): %v", text, err)
				}
				if got != tt.id {
					t.Errorf("ParseID(%q) = %x, want %x", text, got, tt.id)
				}
			}
			b, err := IDFromBytes(tt.id[:])
			if err != nil || b != tt.id {
				t.Errorf("IDFromBytes = %x, %v; want %x", b, err, tt.id)
			}
			if !bytes.Equal(tt.id.PublicKey(), tt.id[:]) {
				t.Errorf("PublicKey() = %x, want %x", tt.id.PublicKey(), tt.id[:])
			}
		})
	}
}

func TestParseIDErrors(t *testing.T) {
	valid := randomIDs(1, 2)[0].String()
	// The last character carries 1 bit of the ID and 4 padding bits; of
	// its 32 values only 'a' (0) and 'q' (16) leave the padding zero.
	nonCanonical := valid[:idTextLen-1] + map[bool]string{true: "b", false: "r"}[valid[idTextLen-1] == 'a']

	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"empty", "", "is 0 characters, want 52"},
		{"one short", valid[:idTextLen-1], "is 51 characters, want 52"},
		{"one long", valid + "a", "is 53 characters, want 52"},
		{"hex instead of base32", strings.Repeat("ab", 32), "is 64 characters, want 52"},
		{"digit 1", valid[:5] + "1" + valid[6:], "outside base32 (a-z, 2-7) at offset 5"},
		{"digit 8", "8" + valid[1:], "outside base32 (a-z, 2-7) at offset 0"},
		{"padding", valid[:idTextLen-1] + "=", "at offset 51"},
		{"newline", valid[:20] + "\n" + valid[21:], "at offset 20"},
		{"space", valid[:30] + " " + valid[31:], "at offset 30"},
		{"non-ASCII", valid[:idTextLen-2] + "é", "at offset 50"},
		{"non-canonical trailing bits", nonCanonical, "not in canonical form"},
		{"zero", strings.Repeat("a", idTextLen), "all-zero ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseID(tt.in)
			if err == nil {
				t.Fatalf("ParseID(%q) = %v, want error", tt.in, id)
			}
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("error %v is not ErrInvalidID", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if !id.IsZero() {
				t.Errorf("ParseID returned %x with its error, want the zero ID", id)
			}
		})
	}
}

func TestParseIDTruncatesLongInput(t *testing.T) {
	_, err := ParseID(strings.Repeat("x", 10000))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("error for a 10000-character input is %d bytes long, want it truncated", len(err.Error()))
	}
}

func TestIDFromBytesErrors(t *testing.T) {
	for _, b := range [][]byte{nil, make([]byte, 31), make([]byte, 33), make([]byte, 32)} {
		if _, err := IDFromBytes(b); !errors.Is(err, ErrInvalidID) {
			t.Errorf("IDFromBytes(%d bytes, zero) error = %v, want ErrInvalidID", len(b), err)
		}
	}
}

func TestIDCompare(t *testing.T) {
	var a, b, c ID
	a[0], b[0] = 1, 2
	c[0], c[IDLen-1] = 1, 1 // same first byte as a, larger later byte
	tests := []struct {
		name string
		x, y ID
		want int
	}{
		{"equal", a, a, 0},
		{"first byte smaller", a, b, -1},
		{"first byte larger", b, a, +1},
		{"first byte decides over last", b, c, +1},
		{"last byte decides on a tie", a, c, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.x.Compare(tt.y); got != tt.want {
				t.Errorf("Compare = %d, want %d", got, tt.want)
			}
			if got := tt.y.Compare(tt.x); got != -tt.want {
				t.Errorf("reversed Compare = %d, want %d", got, -tt.want)
			}
			if got := tt.x.Less(tt.y); got != (tt.want < 0) {
				t.Errorf("Less = %v, want %v", got, tt.want < 0)
			}
		})
	}

	// Sorting by Compare is sorting by bytes.
	ids := randomIDs(100, 3)
	slices.SortFunc(ids, ID.Compare)
	for i := 1; i < len(ids); i++ {
		if bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
			t.Fatalf("ids[%d] >= ids[%d] after sorting by Compare", i-1, i)
		}
	}
}

func TestIDJSON(t *testing.T) {
	id := randomIDs(1, 4)[0]
	type doc struct {
		Peer  ID         `json:"peer"`
		Score map[ID]int `json:"score"` // IDs work as JSON object keys too
	}
	in := doc{Peer: id, Score: map[ID]int{id: 7}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"peer":"` + id.String() + `","score":{"` + id.String() + `":7}}`
	if string(b) != want {
		t.Fatalf("json.Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Peer != id || out.Score[id] != 7 {
		t.Errorf("round trip gave %+v, want %+v", out, in)
	}

	if err := json.Unmarshal([]byte(`{"peer":"nope"}`), &out); !errors.Is(err, ErrInvalidID) {
		t.Errorf("unmarshal of a bad ID: error %v, want ErrInvalidID", err)
	}
	// The zero ID names no peer and does not marshal, so that it is not
	// written out and later read back as a peer.
	if _, err := json.Marshal(doc{}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("marshal of the zero ID: error %v, want ErrInvalidID", err)
	}
}

func FuzzParseID(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParseID.
	f.Add(randomIDs(1, 5)[0].String())
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) || !id.IsZero() {
				t.Fatalf("ParseID(%q) = %x, %v: want the zero ID and ErrInvalidID", s, id, err)
			}
			return
		}
		if id.IsZero() {
			t.Fatalf("ParseID(%q) accepted the zero ID", s)
		}
		// Folding must be ASCII only: strings.EqualFold would also match
		// the Kelvin sign with k.
		if got := id.String(); !asciiEqualFold(got, s) {
			t.Fatalf("ParseID(%q).String() = %q: not the input up to case", s, got)
		}
		if again, err := ParseID(id.String()); err != nil || again != id {
			t.Fatalf("ParseID(ParseID(%q).String()) = %x, %v", s, again, err)
		}
	})
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
