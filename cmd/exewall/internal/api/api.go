// Package api is the daemon's HTTP+JSON interface on its Unix socket: the
// server side wraps an engine.Manager, the client side is what the CLI
// commands call. Only root may talk to it (socket mode 0600, and the peer's
// credentials are checked on every connection).
package api

import (
	"time"

	"github.com/exewall/exewall/engine"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/exewall/exewall.sock"

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	Line  int    `json:"line,omitempty"` // the policy line at fault, if any
}

// ActionRequest sets the policy default.
type ActionRequest struct {
	Action string `json:"action"`
}

// ModeRequest sets the policy mode.
type ModeRequest struct {
	Mode string `json:"mode"`
}

// ApplyRequest replaces the whole policy with a policy file's text.
type ApplyRequest struct {
	Policy        string        `json:"policy"`
	ConfirmWithin time.Duration `json:"confirm_within,omitempty"` // 0: no rollback
}

// ApplyResponse says what is in force after an apply.
type ApplyResponse struct {
	Rules           int        `json:"rules"`
	ConfirmDeadline *time.Time `json:"confirm_deadline,omitempty"`
}

// SyncResponse lists what sync found and repaired.
type SyncResponse struct {
	Drift []engine.Drift `json:"drift"`
}
