//go:build linux

package stack_test

import (
	"os/exec"
	"syscall"
)

// runAsUser prepares cmd, PgBouncer, to run as runAs when that is not nil,
// and returns the user its configuration must switch to: none, as cmd
// starts as runAs. PgBouncer gets SIGTERM when the test process dies, even
// when killed before its cleanup runs (by -timeout, say); switching users
// itself would clear that parent-death signal.
func runAsUser(cmd *exec.Cmd, runAs *unprivileged) (configUser string) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if runAs != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: runAs.uid, Gid: runAs.gid}
	}
	return ""
}
