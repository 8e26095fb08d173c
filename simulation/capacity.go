package simulation

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/peerlink/peerlink/clock"
)

// ErrOverloaded is what a requester sees when the server's request queue
// was full (RequestSpec.Queue): the server closed the stream without an
// answer. Its cause in RequestResult.Errors is "overloaded".
var ErrOverloaded = errors.New("simulation: request refused: server queue full")

// capacity is a node's request server with finite capacity: at most
// limit requests in service at once, then at most queue waiting in FIFO
// order; past that, acquire refuses. Without it (RequestSpec.Concurrency
// 0) every request is served at once, in parallel, and load costs
// nothing, so no balancer could be judged on how it spreads load.
type capacity struct {
	clk   clock.Clock
	limit int
	queue int

	mu      sync.Mutex
	busy    int
	waiting []chan struct{} // FIFO; a slot is handed over by closing one
}

func newCapacity(clk clock.Clock, limit, queue int) *capacity {
	return &capacity{clk: clk, limit: limit, queue: queue}
}

// errGaveUp: the wait for a slot ended with the deadline or ctx.
var errGaveUp = errors.New("simulation: gave up waiting for a request slot")

// acquire takes a service slot, waiting in line until one frees, deadline
// passes or ctx ends (errGaveUp), or fails with ErrOverloaded at once if
// the line is full. After a nil error the caller must call release.
func (c *capacity) acquire(ctx context.Context, deadline time.Time) error {
	c.mu.Lock()
	if c.busy < c.limit {
		c.busy++
		c.mu.Unlock()
		return nil
	}
	if len(c.waiting) >= c.queue {
		c.mu.Unlock()
		return ErrOverloaded
	}
	d := deadline.Sub(c.clk.Now())
	if d <= 0 {
		c.mu.Unlock()
		return errGaveUp
	}
	ch := make(chan struct{})
	c.waiting = append(c.waiting, ch)
	c.mu.Unlock()
	t := c.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C():
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, w := range c.waiting {
		if w == ch {
			c.waiting = append(c.waiting[:i], c.waiting[i+1:]...)
			return errGaveUp
		}
	}
	// release handed the slot over as the wait ended: pass it on.
	c.releaseLocked()
	return errGaveUp
}

// release frees a slot, handing it to the first in line if any.
func (c *capacity) release() {
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
}

func (c *capacity) releaseLocked() {
	if len(c.waiting) > 0 {
		close(c.waiting[0])
		c.waiting[0] = nil
		c.waiting = c.waiting[1:]
		return // busy stays: the slot changes hands
	}
	c.busy--
}
