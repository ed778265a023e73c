package main

import (
	"os/exec"
	"syscall"
)

// dieWithTests makes cmd's process get SIGKILL when the test binary dies,
// even of a panic that skips the cleanups: a worker or a dev server must
// not outlive the tests.
func dieWithTests(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
