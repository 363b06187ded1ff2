package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxPolicyFile bounds what is read as a policy file.
const maxPolicyFile = 16 << 20

var (
	// ErrNoPendingApply is returned by Confirm when no apply waits for it.
	ErrNoPendingApply = errors.New("no apply is waiting for confirmation")
	// ErrNotFound is returned when a rule named on the command line does
	// not exist.
	ErrNotFound = errors.New("no such rule")
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
	return fmt.Sprintf("an apply is waiting for confirmation until %s; run `exewall confirm` (or let it roll back) first",
		e.Deadline.Format(time.RFC3339))
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Backend Backend
	// PolicyFile is the policy's only persisted form.
	PolicyFile string
	// Resolver identifies executables for Validate; nil means StatResolver.
	Resolver Resolver
	Logger   *slog.Logger
	// Window is how many violations are kept for Violations(since); 0 means
	// 10000.
	Window int
	// SubscriberBuffer is how many violations a follower may lag behind
	// before it is dropped; 0 means 1024.
	SubscriberBuffer int
	// RollbackFile keeps the policy an unconfirmed apply replaced, so a
	// daemon that dies before the deadline rolls back when it starts
	// again; "" keeps it in memory only.
	RollbackFile string
	// OnViolation, when set, sees every violation (log file, metrics). It
	// runs on the reader goroutine and must not block for long.
	OnViolation func(Violation)
	// Report, when set, adds what the daemon around the manager knows (its
	// violations log) to every Status.
	Report func(*Status)
}

// ErrEmptyPolicyFile refuses a policy file holding nothing at all: that is
// what a truncated file or a writer caught half way looks like, and taking
// it at its word (no rules, default allow) would drop every rule.
var ErrEmptyPolicyFile = errors.New("the policy file is empty (truncated?); the policy in force stays. For no rules at all, write `rules: []`")

// Manager owns the desired policy: it validates every change, puts it in
// force through the Backend, and persists it to the policy file before
// reporting success. All changes are serialised.
type Manager struct {
	cfg     ManagerConfig
	log     *slog.Logger
	started time.Time
	win     *window

	mu      sync.Mutex
	policy  *Policy
	src     []byte // the policy file's content as last read or written
	managed error  // non-nil: the file is not ours to write
	pending *pendingApply
	// fileErr says why the policy file on disk is not what is in force
	// (deleted, emptied, refused); nil when they agree.
	fileErr error
	// learn is the learning session, if any (learn.go).
	learn atomic.Pointer[learnSession]
}

type pendingApply struct {
	deadline time.Time
	timer    *time.Timer
	prevSrc  []byte
	prev     *Policy
}

// NewManager returns a Manager; Load puts the policy file in force.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Resolver == nil {
		cfg.Resolver = StatResolver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Window <= 0 {
		cfg.Window = 10000
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = 1024
	}
	return &Manager{cfg: cfg, log: cfg.Logger, started: time.Now(), win: newWindow(cfg.Window, cfg.SubscriberBuffer)}
}

// Load reads the policy file and puts it in force. A missing file is
// created with DefaultPolicyFile. A rollback left by a daemon that died
// during a confirm-within window is carried out first.
func (m *Manager) Load(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	path := m.cfg.PolicyFile
	m.managed = m.writable()
	if err := m.recoverRollback(); err != nil {
		return err
	}
	data, err := readAllLimited(path, maxPolicyFile)
	if errors.Is(err, fs.ErrNotExist) {
		data = DefaultPolicyFile
		if m.managed == nil {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
			}
			m.managed = m.writable()
		}
		if m.managed == nil {
			if err := WriteFileAtomic(path, data); err != nil {
				return err
			}
			m.log.Info("no policy file; wrote the default", "path", path)
		} else {
			m.log.Warn("no policy file and cannot write one; enforcing the default", "path", path, "err", m.managed)
		}
	} else if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%s: %w", path, ErrEmptyPolicyFile)
	}
	p, err := m.check(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := m.cfg.Backend.Apply(ctx, p); err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	m.policy, m.src = p, data
	if m.managed != nil {
		m.log.Info("policy file is not writable: running managed, CLI edits refused", "path", path, "reason", m.managed)
	}
	return nil
}

// writable returns nil when the policy file is ours to write, or a
// *ManagedError.
func (m *Manager) writable() error {
	err := Writable(m.cfg.PolicyFile)
	if err == nil || errors.Is(err, fs.ErrNotExist) && m.dirMissing() {
		return nil
	}
	return &ManagedError{Path: m.cfg.PolicyFile, Reason: err}
}

func (m *Manager) dirMissing() bool {
	_, err := os.Stat(filepath.Dir(m.cfg.PolicyFile))
	return errors.Is(err, fs.ErrNotExist)
}

func (m *Manager) check(data []byte) (*Policy, error) {
	p, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := Validate(p, m.cfg.Resolver); err != nil {
		return nil, err
	}
	return p, nil
}

// Policy returns a copy of the policy in force.
func (m *Manager) Policy() *Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policy.Clone()
}

// Managed returns nil when CLI edits are accepted, else the *ManagedError
// saying who owns the policy.
func (m *Manager) Managed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.managed
}

// Update applies edit to a copy of the policy, validates it, puts it in
// force and persists it. On any error the policy in force and the file are
// left as they were.
func (m *Manager) Update(ctx context.Context, edit func(p *Policy) error) (*Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.editable(); err != nil {
		return nil, err
	}
	p := m.policy.Clone()
	if err := edit(p); err != nil {
		return nil, err
	}
	if err := Validate(p, m.cfg.Resolver); err != nil {
		return nil, err
	}
	data, lost, err := EditPolicyFile(m.src, p)
	if err != nil {
		return nil, err
	}
	if lost {
		m.log.Warn("the policy file could not be edited in place; rewritten without its comments", "path", m.cfg.PolicyFile)
	}
	if err := m.commit(ctx, p, data); err != nil {
		return nil, err
	}
	return p.Clone(), nil
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

// commit puts p in force, then writes data; if the write fails the old
// policy is put back so that the kernel and the file keep agreeing.
func (m *Manager) commit(ctx context.Context, p *Policy, data []byte) error {
	if err := m.cfg.Backend.Apply(ctx, p); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if err := WriteFileAtomic(m.cfg.PolicyFile, data); err != nil {
		if rerr := m.cfg.Backend.Apply(context.WithoutCancel(ctx), m.policy); rerr != nil {
			m.log.Error("policy file not written and the previous policy could not be restored", "err", rerr)
		}
		return err
	}
	m.policy, m.src, m.fileErr = p, data, nil
	return nil
}

// AddRule adds r, or replaces the rule selecting the same processes (so
// `exewall deny X` after `exewall allow X` changes X's rule). Without a
// name, the rule keeps the name it had or gets one derived from its
// selector. It returns the rule as stored.
func (m *Manager) AddRule(ctx context.Context, r Rule) (Rule, error) {
	var out Rule
	_, err := m.Update(ctx, func(p *Policy) error {
		at := -1
		for i := range p.Rules {
			if sameSelector(p.Rules[i].Selector, r.Selector) {
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
					r.Name, describeSelector(p.Rules[i].Selector))}
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
	})
	return out, err
}

// RemoveRule removes the rule with that name or, failing that, the rule
// whose exe (or cgroup) is that path.
func (m *Manager) RemoveRule(ctx context.Context, nameOrPath string) (Rule, error) {
	var out Rule
	_, err := m.Update(ctx, func(p *Policy) error {
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
	})
	return out, err
}

// SetDefault changes the verdict for processes no rule selects.
func (m *Manager) SetDefault(ctx context.Context, a Action) error {
	_, err := m.Update(ctx, func(p *Policy) error { p.Default = a; return nil })
	return err
}

// SetMode switches between enforcing and auditing.
func (m *Manager) SetMode(ctx context.Context, mode Mode) error {
	_, err := m.Update(ctx, func(p *Policy) error { p.Mode = mode; return nil })
	return err
}

// ApplyFile replaces the whole policy with the policy file data, which is
// written verbatim (the new file's comments are the user's). With
// confirmWithin > 0 the previous policy comes back by itself unless
// Confirm is called in time.
func (m *Manager) ApplyFile(ctx context.Context, data []byte, confirmWithin time.Duration) (*Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.editable(); err != nil {
		return nil, err
	}
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("policy is larger than %d bytes", maxPolicyFile)
	}
	p, err := m.check(data)
	if err != nil {
		return nil, err
	}
	prev, prevSrc := m.policy, m.src
	if confirmWithin > 0 && m.cfg.RollbackFile != "" {
		// Saved before the change, so a daemon killed in between still
		// knows what to go back to.
		if err := WriteFileAtomic(m.cfg.RollbackFile, prevSrc); err != nil {
			return nil, fmt.Errorf("save rollback: %w", err)
		}
	}
	if err := m.commit(ctx, p, data); err != nil {
		m.removeRollbackFile()
		return nil, err
	}
	if confirmWithin > 0 {
		pa := &pendingApply{deadline: time.Now().Add(confirmWithin), prevSrc: prevSrc, prev: prev}
		pa.timer = time.AfterFunc(confirmWithin, func() { m.rollback(pa) })
		m.pending = pa
		m.log.Info("policy applied; rolls back unless confirmed", "within", confirmWithin)
	}
	return p.Clone(), nil
}

// Confirm keeps the policy of a pending apply --confirm-within.
func (m *Manager) Confirm() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return ErrNoPendingApply
	}
	m.pending.timer.Stop()
	m.pending = nil
	m.removeRollbackFile()
	m.log.Info("applied policy confirmed")
	return nil
}

// Pending returns the deadline of an apply awaiting confirmation.
func (m *Manager) Pending() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return time.Time{}, false
	}
	return m.pending.deadline, true
}

func (m *Manager) rollback(pa *pendingApply) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending != pa {
		return // confirmed meanwhile
	}
	m.pending = nil
	if err := m.commit(context.Background(), pa.prev, pa.prevSrc); err != nil {
		m.log.Error("roll back unconfirmed apply", "err", err)
		return
	}
	m.removeRollbackFile()
	m.log.Warn("apply not confirmed in time; previous policy restored")
}

func (m *Manager) removeRollbackFile() {
	if m.cfg.RollbackFile != "" {
		os.Remove(m.cfg.RollbackFile)
	}
}

// recoverRollback puts back the policy an unconfirmed apply replaced when
// the daemon stopped before the deadline: the confirmation can no longer
// arrive, and the administrator may be locked out by the new policy.
func (m *Manager) recoverRollback() error {
	if m.cfg.RollbackFile == "" {
		return nil
	}
	data, err := readAllLimited(m.cfg.RollbackFile, maxPolicyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read rollback: %w", err)
	}
	if _, err := Parse(data); err != nil {
		m.log.Error("ignoring unreadable rollback", "path", m.cfg.RollbackFile, "err", err)
		m.removeRollbackFile()
		return nil
	}
	if m.managed != nil {
		m.log.Warn("cannot roll back an unconfirmed apply: the policy file is not writable", "err", m.managed)
		m.removeRollbackFile()
		return nil
	}
	if err := WriteFileAtomic(m.cfg.PolicyFile, data); err != nil {
		return fmt.Errorf("roll back unconfirmed apply: %w", err)
	}
	m.removeRollbackFile()
	m.log.Warn("an apply was not confirmed before the daemon stopped; previous policy restored", "path", m.cfg.PolicyFile)
	return nil
}

// Reload reads the policy file again and puts it in force if it changed.
// A file that fails validation, is empty (truncated) or is gone is refused
// and the policy in force stays; Status says so until a good file is read.
// A deleted file is written back from the policy in force when the file is
// ours to write, so that a restarted daemon still enforces it (a missing
// file at start-up would mean the default policy).
func (m *Manager) Reload(ctx context.Context) (changed bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := readAllLimited(m.cfg.PolicyFile, maxPolicyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, m.restoreDeleted()
	}
	if err != nil {
		return false, m.refuseFile(fmt.Errorf("read policy: %w", err))
	}
	m.managed = m.writable()
	if bytes.Equal(data, m.src) {
		m.fileErr = nil
		return false, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return false, m.refuseFile(fmt.Errorf("%s: %w", m.cfg.PolicyFile, ErrEmptyPolicyFile))
	}
	p, err := m.check(data)
	if err != nil {
		return false, m.refuseFile(fmt.Errorf("%s: %w", m.cfg.PolicyFile, err))
	}
	if err := m.cfg.Backend.Apply(ctx, p); err != nil {
		return false, m.refuseFile(fmt.Errorf("apply %s: %w", m.cfg.PolicyFile, err))
	}
	m.policy, m.src, m.fileErr = p, data, nil
	m.learnOverridden("the policy file changed, and is in force now")
	return true, nil
}

// refuseFile records why the file on disk is not in force.
func (m *Manager) refuseFile(err error) error {
	m.fileErr = fmt.Errorf("%w (since %s; the last good policy, %d rules, stays in force)",
		err, time.Now().Format(time.RFC3339), len(m.policy.Rules))
	return err
}

// restoreDeleted handles a policy file that disappeared under a running
// daemon: the policy in force stays, and the file is written back from it
// when the file is ours to write.
func (m *Manager) restoreDeleted() error {
	m.managed = m.writable()
	if m.managed != nil || m.dirMissing() {
		why := m.managed
		if why == nil {
			why = fmt.Errorf("directory %s is gone", filepath.Dir(m.cfg.PolicyFile))
		}
		return m.refuseFile(fmt.Errorf("policy file %s was deleted and cannot be written back (%v)", m.cfg.PolicyFile, why))
	}
	if err := WriteFileAtomic(m.cfg.PolicyFile, m.src); err != nil {
		return m.refuseFile(fmt.Errorf("policy file %s was deleted; writing it back: %w", m.cfg.PolicyFile, err))
	}
	m.fileErr = nil
	m.log.Warn("the policy file was deleted; the policy in force stays and was written back to it (to remove every rule, apply a policy with `rules: []`)",
		"path", m.cfg.PolicyFile, "rules", len(m.policy.Rules))
	return nil
}

// Sync asks the backend to compare the kernel with the policy in force
// and repair what differs.
func (m *Manager) Sync(ctx context.Context) ([]Drift, error) {
	s, ok := m.cfg.Backend.(Syncer)
	if !ok {
		return nil, fmt.Errorf("sync: %s backend: %w", m.cfg.Backend.Name(), ErrNotSupported)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return s.Sync(ctx, m.policy)
}

// Status is what `exewall status --json` prints.
type Status struct {
	Backend       string              `json:"backend"`
	Cgroup        string              `json:"cgroup"` // the attach point
	Hooks         []string            `json:"hooks"`
	Mode          string              `json:"mode"`
	Default       string              `json:"default"`
	Rules         int                 `json:"rules"`
	Counters      Counters            `json:"counters"`
	RuleCounters  map[string]Counters `json:"rule_counters"` // by rule name; "" is the default
	EventsLost    uint64              `json:"events_lost"`
	UptimeSeconds int64               `json:"uptime_seconds"`
	PolicyFile    string              `json:"policy_file"`
	// PolicyFileError says why the policy file on disk is not in force
	// (deleted, empty, refused); the last good policy is. "" when they agree.
	PolicyFileError string     `json:"policy_file_error,omitempty"`
	Managed         bool       `json:"managed"`
	ConfirmDeadline *time.Time `json:"confirm_deadline,omitempty"`
	Violations      uint64     `json:"violations"` // events seen since start
	// ViolationAttempts is what those events stand for (the sum of their
	// counts): comparable with the kernel's denied and audited counters.
	ViolationAttempts uint64 `json:"violation_attempts"`
	// ViolationsLogLost counts violations the daemon's log could not keep
	// (disk full); ViolationsLogError is the write error while it lasts.
	ViolationsLogLost  uint64 `json:"violations_log_lost"`
	ViolationsLogError string `json:"violations_log_error,omitempty"`
	// ViolationsFolded counts events of flooding programs folded into
	// summaries; ViolationsFlooding is how many programs are being folded
	// right now (0 when nobody floods).
	ViolationsFolded   uint64 `json:"violations_folded"`
	ViolationsFlooding int    `json:"violations_flooding"`
	// HeldSocketSweepError says why the last re-judging of held sockets
	// could not finish: connections the policy denies may still be open.
	HeldSocketSweepError string `json:"held_socket_sweep_error,omitempty"`
}

// Status reports the policy in force and the backend's view of the kernel.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	st, err := m.cfg.Backend.State(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	total, _ := m.win.stats()
	s := Status{Backend: st.Backend, Cgroup: st.AttachPoint, Hooks: st.Hooks, Mode: m.policy.Mode.String(),
		Default: m.policy.Default.String(), Rules: len(m.policy.Rules), Counters: st.Counters,
		RuleCounters: st.RuleCounter, EventsLost: st.EventsLost,
		UptimeSeconds: int64(time.Since(m.started).Seconds()), PolicyFile: m.cfg.PolicyFile,
		Managed: m.managed != nil, Violations: total, ViolationAttempts: m.win.attemptsSeen(),
		HeldSocketSweepError: st.SweepError}
	s.ViolationsFolded, s.ViolationsFlooding = m.win.foldStats()
	if s.Hooks == nil {
		s.Hooks = []string{}
	}
	if s.RuleCounters == nil {
		s.RuleCounters = map[string]Counters{}
	}
	if m.pending != nil {
		d := m.pending.deadline
		s.ConfirmDeadline = &d
	}
	if m.fileErr != nil {
		s.PolicyFileError = m.fileErr.Error()
	}
	if m.cfg.Report != nil {
		m.cfg.Report(&s)
	}
	return s, err
}

// Violations returns the violations kept in memory at or after since,
// oldest first.
func (m *Manager) Violations(since time.Time) []Violation { return m.win.since(since) }

// Subscribe streams violations as they arrive. The channel is closed when
// cancel is called, when the stream ends, or when the subscriber falls
// more than SubscriberBuffer violations behind.
func (m *Manager) Subscribe() (<-chan Violation, func()) { return m.win.subscribe() }

// Close stops a pending rollback timer (the rollback file, if any, makes a
// restarted daemon roll back instead).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending != nil {
		m.pending.timer.Stop()
	}
	m.stopLearningOnClose()
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

func describeSelector(s Selector) string {
	switch {
	case s.Exe != "":
		return "exe " + s.Exe
	case s.Cgroup != "":
		return "cgroup " + s.Cgroup
	case s.User != "":
		return "user " + s.User
	}
	return "group " + s.Group
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
