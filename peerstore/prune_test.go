package peerstore_test

import (
	"testing"
	"time"

	"github.com/peerlink/peerlink/peerstore"
)

func TestPrunable(t *testing.T) {
	const retention = time.Hour
	idle := at(-2 * time.Hour)
	for _, tc := range []struct {
		name string
		in   peerstore.PruneInput
		want bool
	}{
		{"idle past retention", peerstore.PruneInput{LastActive: idle}, true},
		{"idle exactly retention", peerstore.PruneInput{LastActive: at(-retention)}, true},
		{"recent", peerstore.PruneInput{LastActive: at(-retention + time.Second)}, false},
		{"never active", peerstore.PruneInput{}, true},
		{"connected", peerstore.PruneInput{Connected: true, LastActive: idle}, false},
		{"dialing", peerstore.PruneInput{Dialing: true, LastActive: idle}, false},
		{"persistent", peerstore.PruneInput{Persistent: true, LastActive: idle}, false},
		{"protected", peerstore.PruneInput{Protected: true, LastActive: idle}, false},
		{"active in the future", peerstore.PruneInput{LastActive: at(time.Minute)}, false},
	} {
		if got := peerstore.Prunable(tc.in, t0, retention); got != tc.want {
			t.Errorf("%s: Prunable = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !peerstore.Prunable(peerstore.PruneInput{LastActive: t0}, t0, 0) {
		t.Error("zero retention: an idle record is not prunable at once")
	}
}
