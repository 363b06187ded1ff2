package client

import (
	"context"
	"net/url"
	"time"

	"github.com/exewall/exewall/engine"
)

// Policy returns the policy in force, in the policy file's field names
// (`exewall ls --json` prints its Rules). Errors: see the package
// documentation.
func (c *Client) Policy(ctx context.Context) (engine.PolicyView, error) {
	var v engine.PolicyView
	return v, c.do(ctx, "GET", "/v1/policy", nil, &v)
}

// PolicyFor is Policy with only the rule whose exe selector names exe,
// if any (a daemon that predates it answers with every rule: filter
// with engine.SameExe).
func (c *Client) PolicyFor(ctx context.Context, exe string) (engine.PolicyView, error) {
	var v engine.PolicyView
	return v, c.do(ctx, "GET", "/v1/policy?exe="+url.QueryEscape(exe), nil, &v)
}

// Rules returns the rules in force (`exewall ls`).
func (c *Client) Rules(ctx context.Context) ([]engine.RuleView, error) {
	var v []engine.RuleView
	return v, c.do(ctx, "GET", "/v1/rules", nil, &v)
}

// AddRule adds r, or replaces the rule selecting the same processes, and
// returns the rule as stored (with the name the daemon gave it when r has
// none). When it returns nil the rule is in force and written to the
// policy file. An invalid rule is an *Error with Status 400; a managed
// policy file, a pending confirmation, a learning session or a change that
// would cut sockets listening now (see Forced) a 409; a rule the backend
// cannot enforce a 501.
func (c *Client) AddRule(ctx context.Context, r engine.RuleView) (engine.RuleView, error) {
	var v engine.RuleView
	return v, c.do(ctx, "POST", "/v1/rules", r, &v)
}

// RemoveRule removes the rule with that name or, failing that, the rule
// for that executable (or cgroup) path, and returns it. No such rule is an
// *Error with Status 404; otherwise as AddRule.
func (c *Client) RemoveRule(ctx context.Context, nameOrPath string) (engine.RuleView, error) {
	var v engine.RuleView
	return v, c.do(ctx, "DELETE", "/v1/rules?name="+url.QueryEscape(nameOrPath), nil, &v)
}

// SetDefault sets the verdict for processes no rule selects: "allow",
// "deny" or "local-only". Errors as AddRule.
func (c *Client) SetDefault(ctx context.Context, action string) error {
	return c.do(ctx, "PUT", "/v1/default", ActionRequest{Action: action}, nil)
}

// SetDefaultInbound sets default_inbound, what processes no rule selects
// accept: "allow", "deny" or "local-only". Errors as AddRule.
func (c *Client) SetDefaultInbound(ctx context.Context, action string) error {
	return c.do(ctx, "PUT", "/v1/default", ActionRequest{Action: action, Inbound: true}, nil)
}

// SetMode sets "enforce" or "audit". Errors as AddRule.
func (c *Client) SetMode(ctx context.Context, mode string) error {
	return c.do(ctx, "PUT", "/v1/mode", ModeRequest{Mode: mode}, nil)
}

// Apply replaces the whole policy with the policy file text, atomically;
// the text becomes the daemon's policy file. With confirmWithin > 0 the
// previous policy comes back by itself unless Confirm is called in time
// (the response's ConfirmDeadline). An invalid policy is an *Error with
// Status 400 whose Line names the line at fault; the policy in force then
// stays. Other errors as AddRule.
func (c *Client) Apply(ctx context.Context, policy []byte, confirmWithin time.Duration) (ApplyResponse, error) {
	var v ApplyResponse
	return v, c.do(ctx, "POST", "/v1/apply", ApplyRequest{Policy: string(policy), ConfirmWithin: confirmWithin}, &v)
}

// Diff validates the policy file text in the daemon exactly as Apply would
// (the same *Error on an invalid or unenforceable policy) and returns what
// applying it would change. Nothing is changed.
func (c *Client) Diff(ctx context.Context, policy []byte) (engine.Changes, error) {
	var v engine.Changes
	return v, c.do(ctx, "POST", "/v1/diff", DiffRequest{Policy: string(policy)}, &v)
}

// Confirm keeps the policy of an Apply with a confirmWithin deadline. With
// no apply waiting it returns an *Error with Status 409.
func (c *Client) Confirm(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/confirm", nil, nil)
}

// Sync compares what the kernel enforces with the policy, repairs what
// differs and returns the differences found (empty: none). A backend that
// cannot compare returns an *Error with Status 501.
func (c *Client) Sync(ctx context.Context) ([]engine.Drift, error) {
	var v SyncResponse
	return v.Drift, c.do(ctx, "POST", "/v1/sync", nil, &v)
}

// Status returns the daemon's state (`exewall status --json`). Errors: see
// the package documentation.
func (c *Client) Status(ctx context.Context) (engine.Status, error) {
	var v engine.Status
	return v, c.do(ctx, "GET", "/v1/status", nil, &v)
}

// Names returns the DNS name -> address bindings in force, per rule, with
// their expiry (`exewall names`), by rule. A backend that does not learn
// names from DNS answers (Windows, macOS) returns an *Error with Status 501
// (errors.Is engine.ErrNotSupported).
func (c *Client) Names(ctx context.Context) ([]NameBinding, error) {
	var v []NameBinding
	return v, c.do(ctx, "GET", "/v1/names", nil, &v)
}

// StartLearning starts a learning session (`exewall learn`): for d (0:
// until StopLearning) the daemon blocks nothing and records every
// connection attempt. The session ends by itself when the client does not
// call LearnStatus for lease (0: DefaultLearnLease). A session already
// running, or a pending confirmation, is an *Error with Status 409.
func (c *Client) StartLearning(ctx context.Context, d, lease time.Duration) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "POST", "/v1/learn", LearnRequest{Duration: d, Lease: lease}, &v)
}

// LearnStatus reports the session's progress and renews its lease. No
// session is an *Error with Status 404.
func (c *Client) LearnStatus(ctx context.Context) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "GET", "/v1/learn", nil, &v)
}

// StopLearning ends the session, putting the previous policy back, and
// returns everything it saw with the policy learned from it (the report's
// Policy, a policy file written with the daemon's own host subnets). No
// session is an *Error with Status 404.
func (c *Client) StopLearning(ctx context.Context) (engine.LearnReport, error) {
	var v engine.LearnReport
	return v, c.do(ctx, "DELETE", "/v1/learn", nil, &v)
}
