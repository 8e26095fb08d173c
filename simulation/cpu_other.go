//go:build !unix

package simulation

import "time"

// processCPU returns 0: the platform has no getrusage.
func processCPU() time.Duration { return 0 }
