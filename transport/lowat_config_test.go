package transport

import (
	"math"
	"testing"

	"github.com/peerlink/peerlink/peer"
)

func TestConfigNotSentLowat(t *testing.T) {
	id, _ := peer.GenerateIdentity()
	for _, tc := range []struct{ in, want int }{
		{0, DefaultNotSentLowat},
		{-1, -1},
		{4096, 4096},
	} {
		cfg, err := Config{Identity: id, Network: "n", NotSentLowat: tc.in}.withDefaults()
		if err != nil || cfg.NotSentLowat != tc.want {
			t.Errorf("NotSentLowat %d: got %d, %v; want %d", tc.in, cfg.NotSentLowat, err, tc.want)
		}
	}
	if big := int64(math.MaxInt32) + 1; big <= math.MaxInt {
		_, err := NewTCP(Config{Identity: id, Network: "n", NotSentLowat: int(big)})
		wantIs(t, err, ErrInvalidConfig)
	}
}
