package clock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/peerlink/peerlink/clock"
)

// A test drives code that waits on a timer without sleeping: it waits
// until the timer is armed, then advances the clock past it.
func ExampleFake() {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)

	done := make(chan time.Duration)
	go func() {
		timer := clk.NewTimer(30 * time.Second) // a retry backoff, say
		fired := <-timer.C()
		done <- fired.Sub(start)
	}()

	if err := clk.BlockUntil(context.Background(), 1); err != nil {
		panic(err)
	}
	clk.Advance(time.Minute)
	fmt.Println("retried after", <-done)
	// Output: retried after 30s
}

// Two Rands over the same seed draw the same jitter: a simulation run
// twice makes the same choices.
func ExampleRand_Jitter() {
	a := clock.NewRand(rand.NewPCG(42, 0))
	b := clock.NewRand(rand.NewPCG(42, 0))
	for range 3 {
		da, db := a.Jitter(time.Second, 0.2), b.Jitter(time.Second, 0.2)
		fmt.Println(da == db, da >= 800*time.Millisecond && da <= 1200*time.Millisecond)
	}
	// Output:
	// true true
	// true true
	// true true
}
