package models

// RunStatus is the lifecycle state of a [FeatureRun].
type RunStatus string

// The states of a [FeatureRun]. A run starts running and ends completed or failed.
const (
	RunRunning   RunStatus = "running"
	RunCompleted RunStatus = "completed"
	RunFailed    RunStatus = "failed"
)

// Valid reports whether s is one of the known run states.
func (s RunStatus) Valid() bool {
	return s == RunRunning || s == RunCompleted || s == RunFailed
}

// Terminal reports whether no transition leaves s.
func (s RunStatus) Terminal() bool { return s == RunCompleted || s == RunFailed }

// SandboxStatus is the lifecycle state of a [Sandbox].
type SandboxStatus string

// The states of a [Sandbox]. A sandbox starts creating, moves between running
// and paused, and ends stopped or failed.
const (
	SandboxCreating SandboxStatus = "creating"
	SandboxRunning  SandboxStatus = "running"
	SandboxPaused   SandboxStatus = "paused"
	SandboxStopped  SandboxStatus = "stopped"
	SandboxFailed   SandboxStatus = "failed"
)

// Valid reports whether s is one of the known sandbox states.
func (s SandboxStatus) Valid() bool {
	switch s {
	case SandboxCreating, SandboxRunning, SandboxPaused, SandboxStopped, SandboxFailed:
		return true
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s SandboxStatus) Terminal() bool { return s == SandboxStopped || s == SandboxFailed }

// PhaseStatus is the lifecycle state of a [PhaseResult].
type PhaseStatus string

// The states of a [PhaseResult]. A phase starts running and ends passed or failed.
const (
	PhaseRunning PhaseStatus = "running"
	PhasePassed  PhaseStatus = "passed"
	PhaseFailed  PhaseStatus = "failed"
)

// Valid reports whether s is one of the known phase states.
func (s PhaseStatus) Valid() bool {
	return s == PhaseRunning || s == PhasePassed || s == PhaseFailed
}

// Terminal reports whether no transition leaves s.
func (s PhaseStatus) Terminal() bool { return s == PhasePassed || s == PhaseFailed }

// InvocationStatus is the lifecycle state of an [AgentInvocation].
type InvocationStatus string

// The states of an [AgentInvocation]. An invocation starts running and ends
// completed or failed.
const (
	InvocationRunning   InvocationStatus = "running"
	InvocationCompleted InvocationStatus = "completed"
	InvocationFailed    InvocationStatus = "failed"
)

// Valid reports whether s is one of the known invocation states.
func (s InvocationStatus) Valid() bool {
	return s == InvocationRunning || s == InvocationCompleted || s == InvocationFailed
}

// Terminal reports whether no transition leaves s.
func (s InvocationStatus) Terminal() bool {
	return s == InvocationCompleted || s == InvocationFailed
}

// CTAStatus is the lifecycle state of a [CTAEvent].
type CTAStatus string

// The states of a [CTAEvent]. A CTA starts pending and ends completed (a person
// answered) or timed_out (its deadline passed first).
const (
	CTAPending   CTAStatus = "pending"
	CTACompleted CTAStatus = "completed"
	CTATimedOut  CTAStatus = "timed_out"
)

// Valid reports whether s is one of the known CTA states.
func (s CTAStatus) Valid() bool {
	return s == CTAPending || s == CTACompleted || s == CTATimedOut
}

// Terminal reports whether no transition leaves s.
func (s CTAStatus) Terminal() bool { return s == CTACompleted || s == CTATimedOut }
