//go:build !unix

package simulation

// processMaxRSS returns 0: the platform has no getrusage.
func processMaxRSS() int64 { return 0 }
