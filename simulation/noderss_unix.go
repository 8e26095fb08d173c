//go:build unix

package simulation

import (
	"runtime"
	"syscall"
)

// processMaxRSS returns the process's peak resident memory so far, in
// bytes (Linux reports KiB, macOS bytes), or 0 if unknown.
func processMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) << 10
}
