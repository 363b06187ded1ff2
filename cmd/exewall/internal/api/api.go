// Package api is the daemon's HTTP+JSON interface: the server side wraps an
// engine.Manager, the client side is what the CLI commands call.
//
// The transport is per OS. On Linux and macOS it is a Unix socket (mode
// 0600 in a 0700 directory) and the peer's credentials are checked on every
// connection, so only root may talk to the daemon. On Windows it is a named
// pipe whose security descriptor admits only SYSTEM and elevated
// Administrators; Windows has no peer credentials on a local socket, so that
// descriptor is the check (peercred_windows.go).
package api

import (
	"time"

	"github.com/exewall/exewall/engine"
)

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
