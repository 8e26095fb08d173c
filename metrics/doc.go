// Package metrics holds the primitives peerlink records into: counters,
// gauges, time-decayed averages, decaying error counts, latency
// histograms and sliding-window rates, with snapshots that are cheap to
// take. It imports nothing of peerlink and nothing outside the standard
// library; a Prometheus collector lives elsewhere and reads the
// snapshots.
//
// # Time
//
// Nothing here reads a clock. Every method that depends on time takes
// the current time as an argument, so callers choose the clock (the
// manager's injected clock.Clock, a simulation's virtual time) and tests
// are deterministic. A time earlier than one already seen counts as no
// time elapsed; it never makes a value grow back.
//
// # Concurrency contract
//
//   - Counter, Gauge: lock-free (one atomic operation per call); the
//     zero value is ready; safe for concurrent use.
//   - Histogram: Record is lock-free (a few atomic adds, plus a
//     compare-and-swap when a record moves the minimum or maximum, and
//     one allocation the first time a power-of-two range is used); the
//     zero value is ready; safe for concurrent use. Snapshot reads the
//     atomics one by one: taken while records continue, it holds some of
//     the records in flight and not others, and its Sum, Min and Max may
//     disagree with its buckets by those records. Merge is safe to run
//     concurrently with Record on either side. Reset is safe to call
//     concurrently but not atomic: records racing with it may be kept
//     in part (for example in the buckets but not the sum).
//   - EWMA, PeakEWMA, DecayingCounter: safe for concurrent use; updates
//     take a short uncontended mutex (tens of nanoseconds, O(1), no
//     allocation). EWMA.Value and PeakEWMA.Value are a single atomic
//     load. Use New… or Init before first use; they must not be copied
//     after first use.
//   - Rate: safe for concurrent use. Add is one atomic add in the common
//     case and takes a mutex once per bucket rotation (once per bucket
//     width per slot); reads are lock-free.
//   - Snapshot structs (HistogramSnapshot, EWMASnapshot) are plain values
//     owned by the caller; they are not safe for concurrent mutation but
//     may be read by many goroutines.
//
// # Windowed histograms
//
// A Histogram accumulates from its creation or its last Reset. For a
// window, either keep one histogram per window and swap them (record
// into the current one, snapshot and Reset the previous one), or keep
// one cumulative histogram and subtract an earlier snapshot from a later
// one with HistogramSnapshot.Sub, which is exact for the buckets, count
// and sum.
package metrics
