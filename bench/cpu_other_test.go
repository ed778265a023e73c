//go:build !unix

package bench

import "time"

// processCPU returns 0: the process's CPU time is only read on Unix, and
// the cpu-sec/op metric is left out elsewhere.
func processCPU() time.Duration { return 0 }
