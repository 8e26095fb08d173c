package simulation

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestDebugDump(t *testing.T) {
	sc := baseline(20)
	if os.Getenv("SIMFAULTS") != "" {
		sc.Faults = []Fault{
			{Kind: FaultChurn, At: Duration(5 * time.Second), For: Duration(15 * time.Second), Rate: 0.5, Down: Duration(3 * time.Second)},
			{Kind: FaultReset, At: Duration(7 * time.Second), Nodes: []int{0, 1}},
		}
	}
	for k := range 2 {
		inBubble(t, func(t *testing.T) {
			res, err := Run(t.Context(), sc, bubbleOpts())
			if err != nil {
				t.Fatal(err)
			}
			f, _ := os.Create(fmt.Sprintf("/tmp/simtrace%d", k))
			for _, r := range res.Trace() {
				fmt.Fprintf(f, "%v %v n%d/%d p%d %v %d\n", r.At, r.Kind, r.Node, r.Inc, r.Peer, r.Reason, r.Dir)
			}
			f.Close()
		})
	}
}
