package engine

import (
	"errors"
	"fmt"
	"time"
)

// The engine's sentinels. Callers test them with errors.Is; the texts are
// short, and what a user can do about them is for the CLI or the API to say.
var (
	// ErrNotSupported is returned (wrapped) when the OS, the kernel or the
	// backend cannot do what was asked. Backends fall back on it, and a
	// Refuser's refusal wraps it.
	ErrNotSupported = errors.New("not supported")
	// ErrNotFound is returned when a rule named by the caller does not exist.
	ErrNotFound = errors.New("no such rule")
	// ErrNoPendingApply is returned by Confirm when no apply waits for it.
	ErrNoPendingApply = errors.New("no apply is waiting for confirmation")
	// ErrEmptyPolicyFile refuses a policy file holding no policy at all
	// (nothing, or only blank lines and comments): that is what a truncated
	// file or a writer caught half way looks like, and taking it at its word
	// (no rules, default allow) would drop every rule. The daemon refuses
	// such a file at start, at reload and at apply, so none is ever written.
	ErrEmptyPolicyFile = errors.New("the policy file holds no policy (it is empty or only comments: truncated?)")
	// ErrLearning refuses a change, or a second session, while a learning
	// session runs: the change would be undone when it ends.
	ErrLearning = errors.New("a learning session is running")
	// ErrNoLearning is returned when no learning session exists.
	ErrNoLearning = errors.New("no learning session")
)

// ManagedError refuses an edit because someone else owns the policy file.
type ManagedError struct {
	Path   string
	Reason error // why the file cannot be written
}

func (e *ManagedError) Error() string {
	return fmt.Sprintf("the policy is managed: %s is not writable by exewall (%v), so whoever provides that file owns the policy; change it there and the daemon follows",
		e.Path, e.Reason)
}

// PendingError refuses a change while an apply awaits confirmation: a
// rollback would silently undo it.
type PendingError struct{ Deadline time.Time }

func (e *PendingError) Error() string {
	return fmt.Sprintf("an apply is waiting for confirmation until %s",
		e.Deadline.Format(time.RFC3339))
}
