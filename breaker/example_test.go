package breaker_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/peerlink/peerlink/breaker"
	"github.com/peerlink/peerlink/peer"
)

func ExampleRegistry() {
	// Open a peer's circuit after 3 failed dials in a row; try again after
	// a minute.
	reg, err := breaker.NewRegistry(breaker.Settings{
		FailureThreshold: 3,
		OpenTimeout:      time.Minute,
	}, func(c breaker.StateChange) {
		// Runs inside the breaker: must not block or call the registry.
		fmt.Printf("peer circuit %s -> %s\n", c.From, c.To)
	})
	if err != nil {
		log.Fatal(err)
	}

	var validator peer.ID // in real code, from the address book
	validator[0] = 1

	errRefused := errors.New("connection refused")
	dial := func() error { return errRefused } // the validator is down

	for i := 1; i <= 4; i++ {
		err := reg.Execute(validator, dial)
		switch {
		case errors.Is(err, breaker.ErrOpen):
			fmt.Printf("dial %d: not attempted, circuit %s\n", i, reg.State(validator))
		case err != nil:
			fmt.Printf("dial %d: %v\n", i, err)
		}
	}
	// Output:
	// dial 1: connection refused
	// dial 2: connection refused
	// peer circuit closed -> open
	// dial 3: connection refused
	// dial 4: not attempted, circuit open
}
