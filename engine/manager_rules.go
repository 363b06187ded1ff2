package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// check parses a policy file and validates it as every apply does.
func (m *Manager) check(data []byte) (*Policy, error) {
	p, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := m.validate(p); err != nil {
		return nil, err
	}
	return p, nil
}

// checkAhead is check, with the parse ParseAhead made of data if there is
// one.
func (m *Manager) checkAhead(data []byte) (*Policy, error) {
	p, ok, err := m.cfg.Ahead.parsed(data)
	if !ok {
		return m.check(data)
	}
	if err != nil {
		return nil, err
	}
	if err := m.validate(p); err != nil {
		return nil, err
	}
	return p, nil
}

// validate is what every policy passes before it is applied: Validate
// with the manager's resolver, then the backend's refusal, if any.
func (m *Manager) validate(p *Policy) error {
	var seen *runnableSeen
	if m.cfg.RunnableCache != "" {
		seen = loadRunnable(m.cfg.RunnableCache)
	}
	if _, err := validateExes(nil, p, m.cfg.Resolver, seen); err != nil {
		return err
	}
	if seen != nil {
		m.saveRunnable(seen)
	}
	return m.refuse(p)
}

// saveRunnable writes what a validation found runnable to the cache, in
// the background (100,000 executables are a 4.8 MB file); Close waits.
func (m *Manager) saveRunnable(seen *runnableSeen) {
	seen.known = nil
	m.saving.Add(1)
	// A later save waits for this one (saveMu): Settle waits for the last.
	done := make(chan struct{})
	m.lastSave.Store(&done)
	go func() {
		defer close(done)
		defer m.saving.Done()
		m.saveMu.Lock()
		defer m.saveMu.Unlock()
		if err := seen.save(m.cfg.RunnableCache); err != nil {
			m.log.Warn("remember the runnable executables", "path", m.cfg.RunnableCache, "err", err)
		}
	}()
}

// validateFrom is validate for a change from old, the policy in force.
func (m *Manager) validateFrom(old, p *Policy) error {
	if err := validateIndexed(old, p, m.cfg.Resolver, &m.exeIdx); err != nil {
		return err
	}
	return m.refuse(p)
}

// refuse asks a Refuser backend whether it can enforce p; the refusal
// always wraps ErrNotSupported.
func (m *Manager) refuse(p *Policy) error {
	r, ok := m.cfg.Backend.(Refuser)
	if !ok {
		return nil
	}
	err := r.Refuse(p)
	if err == nil || errors.Is(err, ErrNotSupported) {
		return err
	}
	return fmt.Errorf("%w: %w", err, ErrNotSupported)
}

// Check validates the policy file data exactly as ApplyFile would (parse,
// Validate, the backend's refusal) without applying it, and returns the
// policy it describes with the policy in force, for a diff.
func (m *Manager) Check(data []byte) (next, cur *Policy, err error) {
	if len(data) > MaxPolicyFile {
		return nil, nil, fmt.Errorf("policy is larger than %d bytes", MaxPolicyFile)
	}
	if EmptyPolicy(data) {
		return nil, nil, ErrEmptyPolicyFile
	}
	p, err := m.check(data)
	if err != nil {
		return nil, nil, err
	}
	return p, m.Policy(), nil
}

// Update applies edit to a copy of the policy, validates it, puts it in
// force and persists it. On any error the policy in force and the file are
// left as they were.
//
// A change that would cut sockets listening now is refused with a
// *CutError unless opts has Force.
func (m *Manager) Update(ctx context.Context, edit func(p *Policy) error, opts ...ChangeOption) (*Policy, error) {
	p, err := m.update(ctx, edit, opts...)
	if err != nil {
		return nil, err
	}
	return p.Clone(), nil
}

// update is Update returning the policy now in force itself, not a copy:
// the edits below want only the error, and a copy of a large policy is
// worth avoiding at every change.
func (m *Manager) update(ctx context.Context, edit func(p *Policy) error, opts ...ChangeOption) (*Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.editable(); err != nil {
		return nil, err
	}
	p := m.policy.Clone()
	if err := edit(p); err != nil {
		return nil, err
	}
	// The file's new text is made while the change is checked (neither
	// changes p): on a large policy both cost milliseconds.
	type text struct {
		data []byte
		scan *scannedText
		lost bool
		err  error
	}
	edited := make(chan text, 1)
	go func(in policyText, old *Policy) {
		// (A large text in force is unpacked here, beside the checks.)
		src, err := in.read()
		if err != nil {
			edited <- text{err: fmt.Errorf("the policy in force: %w", err)}
			return
		}
		if data, scan, ok := editRulesScanned(src, old, p, in.scan); ok {
			edited <- text{data: data, scan: scan}
			return
		}
		data, lost, err := EditPolicyFile(src, p)
		edited <- text{data: data, lost: lost, err: err}
	}(m.text, m.policy)
	if err := m.validateFrom(m.policy, p); err != nil {
		return nil, err
	}
	cuts, err := m.checkCuts(ctx, p, changeOptions(opts))
	if err != nil {
		return nil, err
	}
	t := <-edited
	data, lost, err := t.data, t.lost, t.err
	if err != nil {
		return nil, err
	}
	if lost {
		m.log.Warn("the policy file could not be edited in place; rewritten without its comments", "path", m.cfg.PolicyFile)
	}
	if err := m.commit(ctx, p, data, t.scan); err != nil {
		return nil, err
	}
	m.reportCuts("forced change", cuts)
	return p, nil
}

func (m *Manager) editable() error {
	// Writability is checked on every edit: a config-management tool may
	// have taken the file over since the daemon started.
	if err := m.writable(); err != nil {
		m.managed = err
		return err
	}
	m.managed = nil
	if m.learningActive() {
		return ErrLearning
	}
	if m.pending != nil {
		return &PendingError{Deadline: m.pending.deadline}
	}
	return nil
}

// AddRule adds r, or replaces the rule selecting the same processes (so
// `exewall deny X` after `exewall allow X` changes X's rule). Without a
// name, the rule keeps the name it had or gets one derived from its
// selector. It returns the rule as stored.
func (m *Manager) AddRule(ctx context.Context, r Rule, opts ...ChangeOption) (Rule, error) {
	var out Rule
	_, err := m.update(ctx, func(p *Policy) error {
		at := -1
		same := func(s Selector) bool { return sameSelector(s, r.Selector) }
		if r.Exe != "" {
			k := exeKey(r.Exe) // once, not for every rule
			same = func(s Selector) bool { return s.Exe != "" && keyMatches(s.Exe, k) }
		}
		for i := range p.Rules {
			if same(p.Rules[i].Selector) {
				at = i
				break
			}
		}
		if r.Name == "" {
			if at >= 0 {
				r.Name = p.Rules[at].Name
			} else {
				r.Name = freeName(p, DeriveName(r.Selector))
			}
		}
		for i := range p.Rules {
			if i != at && p.Rules[i].Name == r.Name {
				return &PolicyError{Msg: fmt.Sprintf("a rule named %q already exists (%s); remove it first or choose another --name",
					r.Name, p.Rules[i].Selector.String())}
			}
		}
		r.Line = 0
		if at >= 0 {
			p.Rules[at] = r
		} else {
			p.Rules = append(p.Rules, r)
		}
		out = r
		return nil
	}, opts...)
	return out, err
}

// RemoveRule removes the rule with that name or, failing that, the rule
// whose exe (or cgroup) is that path.
func (m *Manager) RemoveRule(ctx context.Context, nameOrPath string, opts ...ChangeOption) (Rule, error) {
	var out Rule
	_, err := m.update(ctx, func(p *Policy) error {
		at := -1
		for i := range p.Rules {
			if p.Rules[i].Name == nameOrPath {
				at = i
				break
			}
		}
		for i := range p.Rules {
			if at >= 0 {
				break
			}
			r := p.Rules[i]
			if r.Exe != "" && exeKey(r.Exe) == exeKey(nameOrPath) ||
				r.Cgroup != "" && strings.HasPrefix(nameOrPath, "/") && r.Cgroup == CleanCgroup(nameOrPath) {
				at = i
			}
		}
		if at < 0 {
			return fmt.Errorf("%w named %q and none for that executable", ErrNotFound, nameOrPath)
		}
		out = p.Rules[at]
		p.Rules = append(p.Rules[:at], p.Rules[at+1:]...)
		return nil
	}, opts...)
	return out, err
}

// SetDefault changes the verdict for processes no rule selects.
func (m *Manager) SetDefault(ctx context.Context, a Action, opts ...ChangeOption) error {
	_, err := m.update(ctx, func(p *Policy) error { p.Default = a; return nil }, opts...)
	return err
}

// SetDefaultInbound changes what processes no rule selects accept
// (default_inbound), writing it to the policy file.
func (m *Manager) SetDefaultInbound(ctx context.Context, a Action, opts ...ChangeOption) error {
	_, err := m.update(ctx, func(p *Policy) error { p.DefaultInbound, p.InboundSet = a, true; return nil }, opts...)
	return err
}

// SetMode switches between enforcing and auditing.
func (m *Manager) SetMode(ctx context.Context, mode Mode, opts ...ChangeOption) error {
	_, err := m.update(ctx, func(p *Policy) error { p.Mode = mode; return nil }, opts...)
	return err
}

func sameSelector(a, b Selector) bool {
	switch {
	case a.Exe != "" || b.Exe != "":
		return a.Exe != "" && b.Exe != "" && exeKey(a.Exe) == exeKey(b.Exe)
	case a.Cgroup != "" || b.Cgroup != "":
		return CleanCgroup(a.Cgroup) == CleanCgroup(b.Cgroup)
	}
	return a == b
}

// DeriveName makes a rule name from a selector: the executable's file
// name, the cgroup's last element, the user or group name, reduced to the
// characters a name may hold.
func DeriveName(s Selector) string {
	var base string
	switch {
	case s.Exe != "":
		base = s.Exe[strings.LastIndexAny(s.Exe, `/\`)+1:]
		if strings.Contains(s.Exe, `\`) {
			base = strings.TrimSuffix(strings.TrimSuffix(base, ".exe"), ".EXE")
		}
	case s.Cgroup != "":
		c := CleanCgroup(s.Cgroup)
		base = c[strings.LastIndex(c, "/")+1:]
	case s.User != "":
		base = "user-" + s.User
	default:
		base = "group-" + s.Group
	}
	var b strings.Builder
	for i := 0; i < len(base) && b.Len() < MaxNameLen-4; i++ {
		c := base[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			c = '-'
		}
		b.WriteByte(c)
	}
	name := strings.TrimLeft(b.String(), ".-")
	if name == "" {
		name = "rule"
	}
	return name
}

// freeName returns name, or name-2, name-3 ... when taken.
func freeName(p *Policy, name string) string {
	if p.RuleByName(name) == nil {
		return name
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s-%d", name, i)
		if p.RuleByName(n) == nil {
			return n
		}
	}
}
