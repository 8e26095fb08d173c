package peerlink_test

import (
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/peerlink/peerlink"
)

// TestConnectionLimitCappedByOpenFiles: under a soft open-file limit of
// 300, the default 400 links cannot all be held: New caps the limit at
// 300 − 64 − MaxPendingHandshakes (64) − 300/10 = 142, derives the
// watermarks from it, and logs why.
func TestConnectionLimitCappedByOpenFiles(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	if rl.Max < 300 {
		t.Skipf("hard open-file limit %d", rl.Max)
	}
	low := rl
	low.Cur = 300
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	log := make(lineLog, 64)
	cfg := peerlink.DefaultConfig()
	cfg.Logger = zerolog.New(log).Level(zerolog.InfoLevel)
	m, err := peerlink.New(cfg) // no listener: nothing to open while the limit is low
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := m.ConnectionLimits()
	if got.MaxConnections != 142 || got.MaxInboundConnections != 142 || got.Trim.HighWater != 71 || got.Trim.LowWater != 56 {
		t.Fatalf("limits %+v, want 142 links (142 inbound, watermarks 71/56)", got)
	}
	if capped := log.capped(); len(capped) != 1 || !strings.Contains(capped[0], "open-file limit 300") {
		t.Fatalf("log lines %q do not say once why the limit was capped", capped)
	}
}
