package peerlink

import (
	"errors"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peer"
)

func TestPendingAdmissionsCountAndExpire(t *testing.T) {
	p := newPendingAdmissions(10 * time.Second)
	full := errors.New("full")
	atMost := func(n int64) func(int64) error {
		return func(pending int64) error {
			if pending >= n {
				return full
			}
			return nil
		}
	}
	id := func(b byte) peer.ID { var x peer.ID; x[0] = b; return x }
	t0 := time.Unix(1000, 0)
	if err := p.admit(id(1), t0, atMost(2)); err != nil {
		t.Fatal(err)
	}
	if err := p.admit(id(2), t0, atMost(2)); err != nil {
		t.Fatal(err)
	}
	if err := p.admit(id(3), t0.Add(time.Second), atMost(2)); !errors.Is(err, full) {
		t.Fatalf("third admission with two pending: %v, want refused", err)
	}
	p.done(id(1)) // its link arrived
	if err := p.admit(id(3), t0.Add(time.Second), atMost(2)); err != nil {
		t.Fatalf("after one arrived: %v", err)
	}
	// id(2) never arrives (its handshake failed after admission): it stops
	// counting after the handshake timeout, and only then.
	if err := p.admit(id(4), t0.Add(9*time.Second), atMost(2)); !errors.Is(err, full) {
		t.Fatalf("before the timeout: %v, want refused", err)
	}
	if err := p.admit(id(4), t0.Add(10*time.Second), atMost(2)); err != nil {
		t.Fatalf("a phantom admission outlived the handshake timeout: %v", err)
	}
}
