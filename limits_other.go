//go:build !unix

package peerlink

// openFileLimit: no RLIMIT_NOFILE here (Windows counts handles, with no
// small per-process limit).
func openFileLimit() (uint64, bool) { return 0, false }
