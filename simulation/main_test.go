package simulation

import (
	"runtime"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"

	"github.com/peerlink/peerlink/internal/raceflag"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inBubble runs f in a synctest bubble (virtual time). yamux keeps a
// process-wide pool of timers, and a timer made in one bubble must not be
// used in another or outside: two GCs empty the pool on both sides of
// the bubble (see ../shared/notes/yamux-and-synctest.md, pitfall 1).
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	runtime.GC()
	runtime.GC()
	defer raceflag.Bubble()() // the race runtime's limit in bubbles: see raceflag
	synctest.Test(t, f)
	runtime.GC()
	runtime.GC()
}

// bubbleOpts are the options of a run in a bubble: faults land between
// the instants' work.
func bubbleOpts() Options { return Options{Settle: synctest.Wait} }
