package simulation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerlink/peerlink/clock"
)

// TestCapacity: a server with Concurrency 1 and Queue 2 serves one
// request, lines up two in arrival order, refuses the fourth at once,
// and drops one whose deadline passes in line.
func TestCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := clock.Real() // virtual time in the bubble
		c := newCapacity(clk, 1, 2)
		ctx := context.Background()
		far := clk.Now().Add(time.Hour)
		if err := c.acquire(ctx, far); err != nil {
			t.Fatal(err)
		}
		order := make(chan int, 2)
		for i := range 2 {
			go func() {
				if err := c.acquire(ctx, far); err != nil {
					t.Error(err)
					return
				}
				order <- i
				time.Sleep(time.Second) // its service time
				c.release()
			}()
			synctest.Wait() // in line before the next one comes
		}
		if err := c.acquire(ctx, far); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("a fourth request with the line full: %v, want ErrOverloaded", err)
		}
		c.release()
		for want := range 2 {
			if got := <-order; got != want {
				t.Fatalf("served %d, want %d: not first in, first out", got, want)
			}
		}
		synctest.Wait()
		// Both done: the slot is free again.
		if err := c.acquire(ctx, far); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.acquire(ctx, start.Add(3*time.Second)); !errors.Is(err, errGaveUp) {
			t.Fatalf("waiting past the deadline: %v, want errGaveUp", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Fatalf("gave up after %v, want the deadline's 3s", waited)
		}
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		if err := c.acquire(cctx, far); !errors.Is(err, errGaveUp) {
			t.Fatalf("waiting past ctx's end: %v, want errGaveUp", err)
		}
		// The two that gave up left the line.
		c.release()
		if c.busy != 0 || len(c.waiting) != 0 {
			t.Fatalf("after the last release: %d busy, %d waiting, want none", c.busy, len(c.waiting))
		}
	})
}

// TestCapacityHandoverRace: a slot handed over as its waiter gives up
// goes to the next in line rather than being lost.
func TestCapacityHandoverRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCapacity(clock.Real(), 1, 4)
		ctx := context.Background()
		if err := c.acquire(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// The first in line gives up at 1 s, exactly when the slot is
		// released; whichever goes first, the second in line gets it.
		gaveUp := make(chan error, 1)
		go func() { gaveUp <- c.acquire(ctx, time.Now().Add(time.Second)) }()
		synctest.Wait()
		got := make(chan error, 1)
		go func() { got <- c.acquire(ctx, time.Now().Add(time.Hour)) }()
		synctest.Wait()
		time.Sleep(time.Second)
		c.release()
		first := <-gaveUp
		if first == nil {
			c.release() // it got the slot before its deadline fired
		}
		if err := <-got; err != nil {
			t.Fatalf("second in line: %v", err)
		}
		c.release()
		if c.busy != 0 || len(c.waiting) != 0 {
			t.Fatalf("%d busy, %d waiting, want none", c.busy, len(c.waiting))
		}
	})
}

// A bad capacity is refused with an error naming the field.
func TestCapacityValidate(t *testing.T) {
	for _, tc := range []struct{ json, field string }{
		{`"requests": {"rate": 1, "concurrency": -1}`, "Workload.Requests.Concurrency"},
		{`"requests": {"rate": 1, "concurrency": 1, "queue": -1}`, "Workload.Requests.Queue"},
		{`"requests": {"rate": 1, "queue": 4}`, "Workload.Requests.Queue"},
		{`"requests": {"rate": 1, "p2c_choices": 17}`, "Workload.Requests.P2CChoices"},
		{`"requests": {"rate": 1, "p2c_choices": -1}`, "Workload.Requests.P2CChoices"},
	} {
		_, err := ParseScenario([]byte(`{"nodes": 10, "duration": "1s", "workload": {` + tc.json + `}}`))
		if !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v; want ErrScenario naming %s", tc.json, err, tc.field)
		}
	}
}

// concentration: the busiest node's share and its picks over the mean.
func TestConcentration(t *testing.T) {
	share, maxMean := concentration([]int{6, 2, 2, 0}, 4)
	if share != 0.6 || maxMean != 2.4 {
		t.Fatalf("share %v, max/mean %v; want 0.6, 2.4", share, maxMean)
	}
	if s, m := concentration(make([]int, 3), 3); s != 0 || m != 0 {
		t.Fatalf("no pick: %v, %v; want 0, 0", s, m)
	}
}
