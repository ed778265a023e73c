//go:build linux

package dbtest

import (
	"os/exec"
	"syscall"
)

// stopWithTest makes cmd, a server, get SIGTERM when the test process
// dies, even when killed before its cleanup runs (by -timeout, say).
func stopWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
