package mux

import (
	"fmt"
	"sync/atomic"
)

// NodeLimits are the stream budgets a node's sessions share: stream slots
// for each direction apart, and memory for stream receive buffers. One
// value is passed as Config.Node to every session of the node; it is safe
// for concurrent use.
//
// The directions are apart so that remotes cannot take what the node
// needs for its own streams: a peer opening streams (even header-less
// ones) can spend at most the inbound budget, and within it at most
// PeerInbound, while the node's own OpenStream calls draw on the outbound
// budget, whose reserved share only high and critical streams may take.
type NodeLimits struct {
	// Inbound counts the streams remotes open, from the moment their
	// stream header has arrived until their handler returns: a stream
	// that never sends a header holds only a slot of its own session.
	// Inbound streams never take a reserved share (their priority is the
	// remote's word), so the pool has none. An inbound stream that finds
	// it full is reset with code 2.
	Inbound *SlotPool
	// Outbound counts the streams this node opens; OpenStream waits for
	// it as for a session slot (or fails, FailFastStreams).
	Outbound *SlotPool
	// PeerInbound is the most Inbound slots one session may hold, so that
	// no single peer takes the node's whole inbound budget; 0 means no
	// share of its own.
	PeerInbound int

	memLimit int64 // 0: none
	memUsed  atomic.Int64
}

// NewNodeLimits returns node-wide budgets: inbound and outbound stream
// slots (0 = unlimited), outboundReserved of the outbound ones kept for
// high and critical streams, and memory bytes for stream receive buffers
// (0 = no budget), each stream being charged StreamMemory of its window
// for as long as it holds its session slot. With an inbound limit, a
// single peer may hold at most a quarter of the inbound slots (at least
// one); change PeerInbound to set another share.
func NewNodeLimits(inbound, outbound, outboundReserved int, memory int64) *NodeLimits {
	n := &NodeLimits{
		Inbound:  NewSlotPool(inbound, 0),
		Outbound: NewSlotPool(outbound, outboundReserved),
		memLimit: max(memory, 0),
	}
	if inbound > 0 {
		n.PeerInbound = max(inbound/4, 1)
	}
	return n
}

// MemoryInUse returns the bytes of stream buffer memory charged now.
func (n *NodeLimits) MemoryInUse() int64 { return n.memUsed.Load() }

// MemoryLimit returns the memory budget (0: none).
func (n *NodeLimits) MemoryLimit() int64 { return n.memLimit }

// reserve charges b bytes if they fit the budget.
func (n *NodeLimits) reserve(b int64) bool {
	for {
		used := n.memUsed.Load()
		if n.memLimit > 0 && used+b > n.memLimit {
			return false
		}
		if n.memUsed.CompareAndSwap(used, used+b) {
			return true
		}
	}
}

func (n *NodeLimits) unreserve(b int64) { n.memUsed.Add(-b) }

// memErr is the error of a stream refused for want of memory.
func (n *NodeLimits) memErr(b int64) error {
	return &multiError{
		fmt.Sprintf("mux: stream memory budget spent (%d of %d bytes in use, a stream needs %d)", n.memUsed.Load(), n.memLimit, b),
		[]error{ErrMemoryBudget, ErrStreamLimit},
	}
}

// streamOverhead is what a stream costs beside its receive buffer: the
// yamux and mux stream structures, and the goroutine of an inbound
// stream's handler (its smallest stack).
const streamOverhead = 12 << 10

// StreamMemory returns the most memory one stream with a receive window
// of window bytes can make this node hold: yamux grows a stream's receive
// buffer by doubling (bytes.Buffer), so a reader that falls behind can
// leave up to twice the window allocated, plus a frame's worth of slack,
// plus the stream's own structures. Budgets (Config.MemoryBudget,
// NodeLimits) are counted in these bytes.
func StreamMemory(window uint32) int64 {
	return 2*int64(window) + 16<<10 + streamOverhead
}
