// Package cputime reads the CPU time this process has used, for
// benchmarks that report CPU per operation: on a shared machine that is
// steadier than operations per second, because time spent waiting for a
// CPU another job holds is not counted.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user and system CPU time this process has used
// (zeros if the kernel does not say).
func Process() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// Total returns user plus system CPU time of this process.
func Total() time.Duration {
	u, s := Process()
	return u + s
}
