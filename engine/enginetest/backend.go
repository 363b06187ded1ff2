// Package enginetest provides an in-memory engine.Backend, so the manager,
// the API and the CLI can be tested without root or a kernel.
package enginetest

import (
	"context"
	"errors"
	"sync"

	"github.com/exewall/exewall/engine"
)

// Backend is an in-memory engine.Backend that also implements
// engine.Syncer, engine.Resetter and engine.Refuser. It records every policy applied.
type Backend struct {
	mu       sync.Mutex
	applied  []*engine.Policy
	state    engine.State
	drift    []engine.Drift
	failNext error
	closed   bool
	events   chan engine.Violation
	refuse   func(*engine.Policy) error
	listen   []engine.Listener
	listErr  error
}

var (
	_ engine.Backend  = (*Backend)(nil)
	_ engine.Syncer   = (*Backend)(nil)
	_ engine.Resetter = (*Backend)(nil)
	_ engine.Refuser  = (*Backend)(nil)

	_ engine.ListenerLister = (*Backend)(nil)
)

// New returns an empty Backend whose violation stream buffers up to
// buffer events (Emit blocks beyond that, as a kernel would lose them).
func New(buffer int) *Backend {
	return &Backend{events: make(chan engine.Violation, buffer),
		state: engine.State{Backend: "fake", AttachPoint: "/fake", Hooks: []string{"connect4", "connect6"},
			RuleCounter: map[string]engine.Counters{}}}
}

// Name implements engine.Backend.
func (b *Backend) Name() string { return "fake" }

// Apply implements engine.Backend; it fails once with the error given to
// FailNext.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("backend closed")
	}
	if err := b.failNext; err != nil {
		b.failNext = nil
		return err
	}
	b.applied = append(b.applied, p.Clone())
	b.state.Rules = len(p.Rules)
	return nil
}

// State implements engine.Backend.
func (b *Backend) State(ctx context.Context) (engine.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state
	st.RuleCounter = map[string]engine.Counters{}
	for k, v := range b.state.RuleCounter {
		st.RuleCounter[k] = v
	}
	return st, nil
}

// Violations implements engine.Backend.
func (b *Backend) Violations() <-chan engine.Violation { return b.events }

// Close implements engine.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.events)
	}
	return nil
}

// Sync implements engine.Syncer: it reports (as repaired) and clears the
// drift injected with Tamper, and re-applies p.
func (b *Backend) Sync(ctx context.Context, p *engine.Policy) ([]engine.Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.drift
	b.drift = nil
	for i := range out {
		out[i].Repaired = true
	}
	if len(out) > 0 {
		b.applied = append(b.applied, p.Clone())
	}
	return out, nil
}

// Reset implements engine.Resetter.
func (b *Backend) Reset(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applied = nil
	return nil
}

// Refuse implements engine.Refuser with the function given to RefuseWith;
// without one every policy is accepted.
func (b *Backend) Refuse(p *engine.Policy) error {
	b.mu.Lock()
	refuse := b.refuse
	b.mu.Unlock()
	if refuse == nil {
		return nil
	}
	return refuse(p)
}

// RefuseWith makes Refuse answer with refuse (nil: accept everything), as
// a backend that cannot enforce some policies would.
func (b *Backend) RefuseWith(refuse func(*engine.Policy) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse = refuse
}

// Emit delivers a violation as the kernel would.
func (b *Backend) Emit(v engine.Violation) { b.events <- v }

// Tamper makes the next Sync find what.
func (b *Backend) Tamper(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drift = append(b.drift, engine.Drift{What: what})
}

// FailNext makes the next Apply fail with err.
func (b *Backend) FailNext(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = err
}

// SetCounters sets what State reports.
func (b *Backend) SetCounters(total engine.Counters, byRule map[string]engine.Counters, lost uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state.Counters, b.state.RuleCounter, b.state.EventsLost = total, byRule, lost
}

// InForce returns a copy of the last policy applied, or nil.
func (b *Backend) InForce() *engine.Policy {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.applied) == 0 {
		return nil
	}
	return b.applied[len(b.applied)-1].Clone()
}

// Applies returns how many policies were applied.
func (b *Backend) Applies() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.applied)
}

// Listeners implements engine.ListenerLister with what SetListeners gave.
func (b *Backend) Listeners(ctx context.Context) ([]engine.Listener, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]engine.Listener(nil), b.listen...), b.listErr
}

// SetListeners sets the sockets listening now, as the kernel would list
// them; err makes Listeners fail.
func (b *Backend) SetListeners(ls []engine.Listener, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listen, b.listErr = ls, err
}
