package metrics

import "sync/atomic"

// Counter is a monotonic count. The zero value is ready; it is safe for
// concurrent use and lock-free. It is 8 bytes: a caller that puts many
// heavily-written counters side by side may pad them to keep them on
// separate cache lines.
type Counter struct{ v atomic.Uint64 }

// Add adds n to the count.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one to the count.
func (c *Counter) Inc() { c.v.Add(1) }

// Load returns the count.
func (c *Counter) Load() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down, such as the number of open
// links. The zero value is ready; it is safe for concurrent use and
// lock-free.
type Gauge struct{ v atomic.Int64 }

// Set sets the value.
func (g *Gauge) Set(v int64) { g.v.Store(v) }

// Add adds d (which may be negative) to the value.
func (g *Gauge) Add(d int64) { g.v.Add(d) }

// Inc adds one to the value.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one from the value.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Load returns the value.
func (g *Gauge) Load() int64 { return g.v.Load() }
