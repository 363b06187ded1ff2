package client

import (
	"time"

	"github.com/exewall/exewall/engine"
)

// The daemon API's request and response bodies (JSON over HTTP, paths under
// /v1/). The server in cmd/exewall decodes and encodes these same types.

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error string `json:"error"`
	Line  int    `json:"line,omitempty"` // the policy line at fault, if any
}

// ActionRequest sets the policy default (PUT /v1/default), or with
// Inbound its default_inbound.
type ActionRequest struct {
	Action  string `json:"action"`
	Inbound bool   `json:"inbound,omitempty"`
}

// Changing requests (POST and DELETE /v1/rules, PUT /v1/default and
// /v1/mode, POST /v1/apply) take the query parameter force=1: the change is
// made even when it cuts sockets listening now (Client.Forced).

// ModeRequest sets the policy mode (PUT /v1/mode).
type ModeRequest struct {
	Mode string `json:"mode"`
}

// ApplyRequest replaces the whole policy with a policy file's text (POST
// /v1/apply).
type ApplyRequest struct {
	Policy        string        `json:"policy"`
	ConfirmWithin time.Duration `json:"confirm_within,omitempty"` // 0: no rollback
}

// ApplyResponse says what is in force after an apply.
type ApplyResponse struct {
	Rules           int        `json:"rules"`
	ConfirmDeadline *time.Time `json:"confirm_deadline,omitempty"`
}

// DiffRequest asks what an apply of Policy would change (POST /v1/diff).
type DiffRequest struct {
	Policy string `json:"policy"`
}

// SyncResponse lists what sync found and repaired (POST /v1/sync).
type SyncResponse struct {
	Drift []engine.Drift `json:"drift"`
}

// LearnRequest starts a learning session (POST /v1/learn).
type LearnRequest struct {
	// Duration is how long the session runs; 0: until stopped.
	Duration time.Duration `json:"duration,omitempty"`
	// Lease ends the session when the client has not polled it for this
	// long (it died); 0 means DefaultLearnLease.
	Lease time.Duration `json:"lease,omitempty"`
}

// DefaultLearnLease is how long a learning session outlives a silent client.
const DefaultLearnLease = 30 * time.Second

// NameBinding is one DNS name -> address binding a rule's name entry put in
// force (GET /v1/names).
type NameBinding = engine.NameBinding
