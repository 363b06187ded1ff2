package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Backend Backend
	// PolicyFile is the policy's only persisted form. "" keeps the policy
	// in memory only: Load puts DefaultPolicy in force (or the policy
	// given in Policy), edits and applies change it in memory, and nothing
	// is ever "managed".
	PolicyFile string
	// Policy is what Load puts in force when PolicyFile is "" (nil:
	// DefaultPolicy). Ignored with a PolicyFile.
	Policy *Policy
	// Resolver identifies executables for Validate; nil means the Backend
	// when it implements Resolver, else StatResolver.
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
	// HostNets returns the host's own subnets, which the policy a
	// learning session writes counts as local; nil means InterfaceNets.
	HostNets func() []netip.Prefix
	// Report, when set, adds what the daemon around the manager knows (its
	// violations log) to every Status.
	Report func(*Status)
	// Ahead, when set, is PolicyFile parsed in the background since before
	// the Backend was made (ParseAhead): Load takes the parse from there.
	Ahead *Ahead
	// RunnableCache is a file where the executables a validation found
	// runnable are remembered by what stat says of them, so that the next
	// start does not read each one again (runnable.go); "" remembers
	// nothing.
	RunnableCache string
}

// Manager owns the desired policy: it validates every change (Validate,
// then the Backend's Refuser if it has one), puts it in force through the
// Backend, and persists it to the policy file, if there is one, before
// reporting success. All changes are serialised.
//
// Its methods fall in three files: manager.go (state: status, violations,
// sync), manager_file.go (the policy file: load, reload, apply, confirm)
// and manager_rules.go (rule edits).
type Manager struct {
	cfg     ManagerConfig
	log     *slog.Logger
	started time.Time
	win     *window

	mu      sync.Mutex
	policy  *Policy
	text    policyText // the policy file's content as last read or written
	managed error      // non-nil: the file is not ours to write
	pending *pendingApply
	// fileErr says why the policy file on disk is not what is in force
	// (deleted, emptied, refused); nil when they agree.
	fileErr error
	// learn is the learning session, if any (learn.go).
	learn atomic.Pointer[learnSession]
	// cutTotal counts listening sockets changes cut (forced, or applied
	// at start, reload, in managed mode); lastCut is the latest such change.
	cutTotal uint64
	lastCut  *CutReport
	// exeIdx is which rule names each executable identity, as the last
	// check of a change found it (exeindex.go).
	exeIdx *exeIndex
	// saving is the writes of the runnable cache in flight; saveMu puts
	// them one after the other.
	saving sync.WaitGroup
	saveMu sync.Mutex
	// lastSave is closed when the last save started has ended (Settle).
	lastSave atomic.Pointer[chan struct{}]
}

type pendingApply struct {
	deadline time.Time
	timer    *time.Timer
	prevSrc  []byte
	prev     *Policy
}

// NewManager returns a Manager; Load puts the policy in force.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Resolver == nil {
		if r, ok := cfg.Backend.(Resolver); ok {
			cfg.Resolver = r
		} else {
			cfg.Resolver = StatResolver{}
		}
	}
	if cfg.HostNets == nil {
		cfg.HostNets = InterfaceNets
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

// Policy returns a copy of the policy in force.
func (m *Manager) Policy() *Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policy.Clone()
}

// PolicyWhere is Policy with only the rules keep selects: a caller after
// one rule does not pay for copying (and sending) all of them.
func (m *Manager) PolicyWhere(keep func(*Rule) bool) *Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.policy
	c := &Policy{Default: p.Default, Mode: p.Mode, DefaultInbound: p.DefaultInbound, InboundSet: p.InboundSet,
		Resolvers: append([]netip.AddrPort(nil), p.Resolvers...)}
	for i := range p.Rules {
		if keep(&p.Rules[i]) {
			r := p.Rules[i]
			r.Allow = append([]Dest(nil), r.Allow...)
			r.Deny = append([]Dest(nil), r.Deny...)
			c.Rules = append(c.Rules, r)
		}
	}
	return c
}

// SameExe reports whether two exe selectors name the same path: cleaned
// paths are compared on Unix; Windows paths ignore case and slash style.
func SameExe(a, b string) bool {
	if strings.HasPrefix(a, "/") && strings.HasPrefix(b, "/") {
		if a == b {
			return true
		}
		// Callers compare one path with every rule's: most are clean, and
		// two clean paths are the same only when equal.
		return (!cleanAbs(a) || !cleanAbs(b)) && path.Clean(a) == path.Clean(b)
	}
	norm := func(s string) string { return strings.ReplaceAll(s, "/", `\`) }
	return strings.EqualFold(norm(a), norm(b))
}

// cleanAbs reports whether path.Clean leaves the absolute path s as it is.
func cleanAbs(s string) bool {
	if len(s) > 1 && s[len(s)-1] == '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '/' || i+1 == len(s) {
			continue
		}
		switch rest := s[i+1:]; {
		case rest[0] == '/', rest == ".", rest == "..", strings.HasPrefix(rest, "./"), strings.HasPrefix(rest, "../"):
			return false
		}
	}
	return true
}

// Managed returns nil when CLI edits are accepted, else the *ManagedError
// saying who owns the policy.
func (m *Manager) Managed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.managed
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
	// Backend, AttachPoint (for the CLI contract, "cgroup" in JSON),
	// Hooks, Counters, RuleCounter and EventsLost are the backend's State.
	Backend       string              `json:"backend"`
	AttachPoint   string              `json:"cgroup"`
	Hooks         []string            `json:"hooks"`
	Mode          string              `json:"mode"`
	Default       string              `json:"default"`
	Rules         int                 `json:"rules"` // in the policy in force
	Counters      Counters            `json:"counters"`
	RuleCounter   map[string]Counters `json:"rule_counters"` // by rule name; "" is the default
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
	// Names are the DNS forwarder's counters and TTL bounds, when one runs.
	Names *NameStats `json:"names,omitempty"`
	// DefaultInbound is what programs no rule selects accept.
	DefaultInbound string `json:"default_inbound"`
	// ListenersCut counts listening sockets policy changes cut (forced, or
	// at start, reload and in managed mode, where nothing is refused);
	// LastListenersCut is the latest such change.
	ListenersCut     uint64     `json:"listeners_cut"`
	LastListenersCut *CutReport `json:"last_listeners_cut,omitempty"`
}

// Status reports the policy in force and the backend's view of the kernel.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	st, err := m.cfg.Backend.State(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	total, _ := m.win.stats()
	s := Status{Backend: st.Backend, AttachPoint: st.AttachPoint, Hooks: st.Hooks, Mode: m.policy.Mode.String(),
		Default: m.policy.Default.String(), Rules: len(m.policy.Rules), Counters: st.Counters,
		RuleCounter: st.RuleCounter, EventsLost: st.EventsLost,
		UptimeSeconds: int64(time.Since(m.started).Seconds()), PolicyFile: m.cfg.PolicyFile,
		Managed: m.managed != nil, Violations: total, ViolationAttempts: m.win.attemptsSeen(),
		HeldSocketSweepError: st.SweepError, DefaultInbound: m.policy.DefaultInbound.String(),
		ListenersCut: m.cutTotal, LastListenersCut: m.lastCut}
	s.ViolationsFolded, s.ViolationsFlooding = m.win.foldStats()
	s.Names = m.nameStats()
	if s.Hooks == nil {
		s.Hooks = []string{}
	}
	if s.RuleCounter == nil {
		s.RuleCounter = map[string]Counters{}
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

// Settle waits until the work a load left running in the background (the
// runnable cache's save: at 100,000 rules a 4.8 MB buffer and the list it
// is made from) has ended. A daemon calls it before it gives its start's
// memory back to the system.
func (m *Manager) Settle() {
	if done := m.lastSave.Load(); done != nil {
		<-*done
	}
}

// Close stops a pending rollback timer (the rollback file, if any, makes a
// restarted daemon roll back instead).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending != nil {
		m.pending.timer.Stop()
	}
	m.stopLearningOnClose()
	m.saving.Wait()
}
