//go:build !linux

package stack_test

import "os/exec"

// runAsUser returns the user PgBouncer's configuration must switch to,
// runAs when that is not nil. Unlike on Linux, PgBouncer outlives a test
// process killed before its cleanup runs.
func runAsUser(cmd *exec.Cmd, runAs *unprivileged) (configUser string) {
	if runAs == nil {
		return ""
	}
	return runAs.name
}
