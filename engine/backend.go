package engine

import "context"

// Backend enforces a policy with one OS's kernel mechanism. Implementations:
// linux (eBPF), darwin (pf), windows (WFP), enginetest (in memory).
type Backend interface {
	// Name is a short identifier such as "ebpf", "pf" or "wfp".
	Name() string
	// Apply puts the whole policy in force atomically: when it returns nil no
	// connection is judged by the previous policy any more, and none was ever
	// judged by a mix of both. On error the previous policy stays in force.
	Apply(ctx context.Context, p *Policy) error
	// State reports what is in force in the kernel right now.
	State(ctx context.Context) (State, error)
	// Violations returns the stream of denied and audited attempts. It is the
	// same channel on every call and is closed by Close.
	Violations() <-chan Violation
	// Close releases the backend's handles. Enforcement stays in place
	// (pinned/persistent) unless the backend was told to detach.
	Close() error
}

// Counters are totals of judged connection attempts.
type Counters struct {
	Allowed uint64 `json:"allowed"`
	Denied  uint64 `json:"denied"`
	Audited uint64 `json:"audited"`
}

// Add returns the sum of c and o.
func (c Counters) Add(o Counters) Counters {
	return Counters{c.Allowed + o.Allowed, c.Denied + o.Denied, c.Audited + o.Audited}
}

// State is a backend's report of what the kernel enforces.
type State struct {
	Backend     string              `json:"backend"`
	AttachPoint string              `json:"attach_point"`
	Hooks       []string            `json:"hooks"`         // active hook names
	Rules       int                 `json:"rules"`         // rules in force
	Counters    Counters            `json:"counters"`      // totals
	RuleCounter map[string]Counters `json:"rule_counters"` // by rule name; "" is the default
	EventsLost  uint64              `json:"events_lost"`
	// SweepError says why the last re-judging of held sockets after an
	// apply could not finish (connections the policy denies may still be
	// open); "" when it did.
	SweepError string `json:"sweep_error,omitempty"`
}

// Drift is one difference found between the kernel and the desired policy.
type Drift struct {
	What     string `json:"what"`     // e.g. "program detached from cgroup"
	Repaired bool   `json:"repaired"` // whether Sync put it back
}

// Syncer is implemented by backends that can compare the kernel with the
// desired policy and repair what someone changed behind their back.
type Syncer interface {
	Sync(ctx context.Context, p *Policy) ([]Drift, error)
}

// Refuser is implemented by backends that cannot enforce every policy the
// engine accepts (pf cannot match executables, a kernel may lack a hook).
// The Manager calls Refuse on every policy before it applies it (load,
// reload, edits, apply, learning), after Validate: a refused policy never
// reaches Apply and the policy in force stays. Refuse must not change any
// state. It returns nil, or an error wrapping ErrNotSupported that names
// the rule and what cannot be enforced, in one line; the Manager wraps an
// error that does not.
type Refuser interface {
	Refuse(p *Policy) error
}

// A Backend that also implements Resolver identifies executables for the
// Manager (ManagerConfig.Resolver nil): what it matches is then exactly
// what Validate checked.

// Resetter is implemented by backends that can remove everything they put in
// the kernel (programs, pins, filters, anchors).
type Resetter interface {
	Reset(ctx context.Context) error
}

// Check is one line of `exewall doctor`.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"` // what works, or what to do about it
	// Optional marks a check exewall works without: when it is not OK,
	// Detail says what it would add, and doctor does not count it as a
	// failure.
	Optional bool `json:"optional,omitempty"`
	// Finding marks a fact about the machine that weakens what exewall can
	// promise (a non-inet family any user can open): printed as WARN with
	// its remedy, not counted as a failure of exewall.
	Finding bool `json:"finding,omitempty"`
}

type ownedKey struct{}

// WithOwnedPolicy marks ctx for a Backend.Apply whose policy nobody changes
// afterwards (the Manager's policies are replaced, never changed in
// place): the backend may then keep it as it is instead of a copy, which
// at every one-rule change of a large policy is worth saving.
func WithOwnedPolicy(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownedKey{}, true)
}

// OwnedPolicy reports whether ctx was marked by WithOwnedPolicy.
func OwnedPolicy(ctx context.Context) bool {
	v, _ := ctx.Value(ownedKey{}).(bool)
	return v
}
