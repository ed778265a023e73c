//go:build !linux

package dbtest

import "os/exec"

// stopWithTest does nothing: unlike on Linux, a server outlives a test
// process killed before its cleanup runs.
func stopWithTest(*exec.Cmd) {}
