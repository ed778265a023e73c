package workload

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/agentpipeline/persistence/repository"
)

// Mode says what ran before an execution of a step, which decides the
// errors the step may return.
type Mode int

const (
	// InOrder is an execution after every step before it and before any
	// step after it: the first one, or a repetition before the workflow
	// moved on (a retry, a duplicate delivery, copies of the step racing).
	InOrder Mode = iota
	// Replay is an execution after later steps of the workflow ran, as when
	// a workflow is replayed from its start after a crash.
	Replay
)

// String returns "in order" or "replay", for error messages.
func (m Mode) String() string {
	if m == Replay {
		return "replay"
	}
	return "in order"
}

// Check applies the error policy of the step called name to err, the error
// one execution of it in mode returned. It returns nil when the outcome is
// one the step may have, and otherwise an error naming the step that wraps
// err, if any.
//
// Every step must return nil, except:
//
//   - "run/fail-late" must return repository.ErrInvalidTransition, in every
//     mode: the run completed before it, and a completed run cannot fail.
//   - "cta/<name>/complete-race" and "cta/<name>/timeout-race" may return
//     repository.ErrInvalidTransition, in every mode: the answer and the
//     timeout of one CTA event race, and whichever is second loses. Exactly
//     one of them wins; the database, not Check, says which.
//   - In Replay mode, "run/phase/<phase>" may return
//     repository.ErrInvalidTransition, as once the run completed its phase
//     is final; and "sandbox/<i>/<action>" other than create may return it,
//     as once the sandbox stopped or failed it never leaves that status.
//     Replayed before those points, they succeed and later steps redo the
//     moves that follow.
//
// Replays of every other step succeed and change nothing: creates find
// their row, transitions find it in the state they ask for, and appended
// memories are already present.
func Check(name string, mode Mode, err error) error {
	switch policyOf(name, mode) {
	case mustFail:
		if err == nil {
			return fmt.Errorf("step %s (%s): succeeded, want %w", name, mode, repository.ErrInvalidTransition)
		}
		if errors.Is(err, repository.ErrInvalidTransition) {
			return nil
		}
	case mayFail:
		if err == nil || errors.Is(err, repository.ErrInvalidTransition) {
			return nil
		}
	default:
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("step %s (%s): %w", name, mode, err)
}

// Exec executes step against s in mode and returns what Check says of its
// error.
func Exec(ctx context.Context, s Store, step Step, mode Mode) error {
	return Check(step.Name, mode, step.Run(ctx, s))
}

type policy int

const (
	mustSucceed policy = iota
	// mayFail accepts repository.ErrInvalidTransition.
	mayFail
	// mustFail requires repository.ErrInvalidTransition.
	mustFail
)

func policyOf(name string, mode Mode) policy {
	parts := strings.Split(name, "/")
	action := parts[len(parts)-1]
	switch {
	case name == "run/fail-late":
		return mustFail
	case parts[0] == "cta" && (action == "complete-race" || action == "timeout-race"):
		return mayFail
	case mode == Replay && len(parts) == 3 && parts[0] == "run" && parts[1] == "phase":
		return mayFail
	case mode == Replay && len(parts) == 3 && parts[0] == "sandbox" && action != "create":
		return mayFail
	}
	return mustSucceed
}
