//go:build !linux

package main

import "os/exec"

// dieWithTests does nothing where processes cannot ask to die with their
// parent: the tests' cleanups stop what they started.
func dieWithTests(*exec.Cmd) {}
