//go:build unix

package peerlink

import "syscall"

// openFileLimit returns the process's soft limit on open files, and false
// if there is none to speak of.
func openFileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	// Cur is an int64 on some BSDs. RLIM_INFINITY, or as good as, means
	// no limit.
	n := uint64(rl.Cur)
	if n == 0 || n >= 1<<40 {
		return 0, false
	}
	return n, true
}
