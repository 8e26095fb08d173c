package peerstore

import (
	"testing"
	"time"
	"unsafe"
)

func TestStampRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		time.Unix(0, 0), // a common start for a fake clock: must not read as "never"
		time.Unix(0, -1),
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1700, 6, 1, 12, 0, 0, 1, time.UTC),
		time.Date(2260, 6, 1, 12, 0, 0, 1, time.UTC),
	} {
		s := stampOf(tm)
		if s == 0 {
			t.Errorf("stampOf(%v) is the zero stamp", tm)
		}
		if got := s.time(); !got.Equal(tm) {
			t.Errorf("stampOf(%v).time() = %v", tm, got)
		}
	}
	if s := stampOf(time.Time{}); s != 0 || !s.time().IsZero() {
		t.Errorf("zero Time maps to stamp %d", s)
	}
}

func TestStampOrder(t *testing.T) {
	times := []time.Time{
		time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, -1),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := stampOf(times[i-1]), stampOf(times[i])
		if a >= b {
			t.Errorf("stamp of %v not below stamp of %v", times[i-1], times[i])
		}
		if d := b.sub(a); d != times[i].Sub(times[i-1]) {
			t.Errorf("sub = %v, want %v", d, times[i].Sub(times[i-1]))
		}
		if d := a.sub(b); d != 0 {
			t.Errorf("sub of a later stamp = %v, want 0", d)
		}
	}
	if s := stampOf(time.Unix(0, 0)).add(1<<63 - 1); s != ^stamp(0) {
		t.Errorf("add does not saturate: %d", s)
	}
}

// TestSizes guards the footprint of the records a manager keeps by the
// thousand.
func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, max uintptr
	}{
		{"AddrBook", unsafe.Sizeof(AddrBook{}), 24},
		{"addrEntry", unsafe.Sizeof(addrEntry{}), 48},
		{"History", unsafe.Sizeof(History{}), 160},
	} {
		t.Logf("%s: %d bytes", tc.name, tc.size)
		if tc.size > tc.max {
			t.Errorf("%s is %d bytes, more than %d", tc.name, tc.size, tc.max)
		}
	}
}
