package mux

import "sync/atomic"

// Totals sums the figures of every session that shares it
// (Config.Totals): a node's open streams, write queues, bytes and
// refusals, kept as the sessions change them, so that a node with ten
// thousand links reads its figures in a few atomic loads rather than a
// pass over its links. Sessions add to it with atomic adds only, on
// paths that already make one (a stream opens or closes, a write is
// queued, a socket read or write returns).
//
// The zero value is ready to use. A session's contribution to the
// gauges (streams, queues) returns to zero as its streams are released
// and its queue drains, which every session does by the time it has
// ended; the counters (bytes, streams opened, refusals) only grow.
type Totals struct {
	inbound, outbound         atomic.Int64
	byPriority                [2][NumPriorities]atomic.Int64 // outbound, inbound
	queuedWrites, queuedBytes atomic.Int64
	// fill counts sessions by how full their write queue is, in
	// sixteenths of MaxQueuedBytes (fill[k]: k/16 ≤ full < (k+1)/16;
	// fill[16]: full). An empty queue is counted nowhere.
	fill                                   [fillSteps + 1]atomic.Int64
	bytesIn, bytesOut                      atomic.Uint64
	streams, limitRefusals, budgetRefusals atomic.Uint64
}

// ByDirection returns the open streams whose priority is known (outbound
// ones, and inbound ones whose header has arrived) by direction and
// priority.
func (t *Totals) ByDirection() (outbound, inbound [NumPriorities]int) {
	for p := range outbound {
		outbound[p] = int(t.byPriority[0][p].Load())
		inbound[p] = int(t.byPriority[1][p].Load())
	}
	return outbound, inbound
}

// fillSteps is the resolution of Totals' fullest-queue figure.
const fillSteps = 16

// Figures returns the sums as one Figures: Utilization is the fullest
// session's queue, rounded down to a sixteenth of MaxQueuedBytes. Each
// figure is exact as of its load; the figures are not one atomic
// snapshot.
func (t *Totals) Figures() Figures {
	f := Figures{
		Inbound:        int(t.inbound.Load()),
		Outbound:       int(t.outbound.Load()),
		QueuedWrites:   int(t.queuedWrites.Load()),
		QueuedBytes:    t.queuedBytes.Load(),
		BytesIn:        t.bytesIn.Load(),
		BytesOut:       t.bytesOut.Load(),
		Streams:        t.streams.Load(),
		LimitRefusals:  t.limitRefusals.Load(),
		BudgetRefusals: t.budgetRefusals.Load(),
	}
	for p := range f.ByPriority {
		f.ByPriority[p] = int(t.byPriority[0][p].Load() + t.byPriority[1][p].Load())
	}
	for k := fillSteps; k > 0; k-- {
		if t.fill[k].Load() > 0 {
			f.Utilization = float64(k) / fillSteps
			break
		}
	}
	return f
}

// The methods below are the sessions' side. Each is a no-op on a nil
// *Totals (a session that shares none).

func (t *Totals) addStreams(in, out int64) {
	if t != nil {
		t.inbound.Add(in)
		t.outbound.Add(out)
	}
}

func (t *Totals) addPriority(inbound bool, p Priority, d int64) {
	if t != nil {
		t.byPriority[b2i(inbound)][p].Add(d)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addQueue moves a session's queue by writes and bytes, and from fill
// step from to step to (0: empty or under a sixteenth, not counted).
func (t *Totals) addQueue(writes, bytes int64, from, to int) {
	if t == nil {
		return
	}
	t.queuedWrites.Add(writes)
	t.queuedBytes.Add(bytes)
	if from != to {
		if from > 0 {
			t.fill[from].Add(-1)
		}
		if to > 0 {
			t.fill[to].Add(1)
		}
	}
}

func (t *Totals) addIn(n uint64) {
	if t != nil {
		t.bytesIn.Add(n)
	}
}

func (t *Totals) addOut(n uint64) {
	if t != nil {
		t.bytesOut.Add(n)
	}
}

func (t *Totals) streamOpened() {
	if t != nil {
		t.streams.Add(1)
	}
}

// refused counts an inbound stream refused for want of a slot, and of
// memory if memory is set.
func (t *Totals) refused(memory bool) {
	if t != nil {
		t.limitRefusals.Add(1)
		if memory {
			t.budgetRefusals.Add(1)
		}
	}
}

// fillStep is the fill step of a queue holding queued of max bytes.
func fillStep(queued, max int64) int {
	if queued <= 0 || max <= 0 {
		return 0
	}
	return int(min(queued*fillSteps/max, fillSteps))
}
