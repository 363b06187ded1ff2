package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"
)

// A learning session (`exewall learn`) puts a policy in force that blocks
// nothing and reports every connection attempt (no rules, default deny,
// mode audit), records what each executable tried, and puts the previous
// policy back when it ends. The learning policy lives only in the kernel
// and in memory, never in the policy file, so a daemon that dies during a
// session starts again with the previous policy; a daemon that stops puts
// it back before it goes (Close). A session ends when its duration is up,
// when the client stops it, or when the client stops renewing its lease
// (the CLI died): whichever comes first.

// LearningPolicy is what a learning session enforces: nothing is blocked,
// every attempt of every process is reported with its executable.
// What programs accept is reported too (default_inbound: deny, audited)
// where the backend judges inbound; LearningPolicyOutbound is the fallback
// for backends that do not.
func LearningPolicy() *Policy {
	return &Policy{Default: ActionDeny, Mode: ModeAudit, DefaultInbound: ActionDeny, InboundSet: true}
}

// LearningPolicyOutbound is LearningPolicy for a backend that refuses to
// judge inbound: only what programs open is seen.
func LearningPolicyOutbound() *Policy { return &Policy{Default: ActionDeny, Mode: ModeAudit} }

// Learning session bounds: observations kept per session (distinct
// executable, destination, port and protocol), so a scan or a storm costs
// bounded memory; what does not fit is counted.
const maxLearnKeys = 100000

// LearnDest is one destination an executable tried, with how often; with
// Direction "in", a peer it accepted (Addr) on its local port (Port).
type LearnDest struct {
	Addr      netip.Addr `json:"addr"`
	Port      uint16     `json:"port"`
	Proto     string     `json:"proto"`
	Direction string     `json:"direction,omitempty"` // "in", or "" for out
	Count     uint64     `json:"count"`
	First     time.Time  `json:"first"`
	Last      time.Time  `json:"last"`
}

// LearnExe is what one executable did during a session.
type LearnExe struct {
	Exe    string      `json:"exe"`
	Comms  []string    `json:"comms"`
	UIDs   []uint32    `json:"uids"`
	Events uint64      `json:"events"`
	Dests  []LearnDest `json:"dests"`
	// Lookups are the DNS answers it received (names it asked and the
	// addresses answered), when the forwarder saw them.
	Lookups []LearnLookup `json:"lookups,omitempty"`
}

// LearnReport is a session's state, and at its end what it saw.
type LearnReport struct {
	Started   time.Time  `json:"started"`
	Deadline  *time.Time `json:"deadline,omitempty"` // nil: until stopped
	Active    bool       `json:"active"`
	EndReason string     `json:"end_reason,omitempty"`
	Events    uint64     `json:"events"`
	Exes      int        `json:"executables"`
	// Dropped counts attempts not kept (the table was full).
	Dropped uint64 `json:"dropped"`
	// NotSent counts UDP connects that proved no datagram was sent (see
	// Violation.ConnectOnly): learned from, they would allow UDP to a port
	// the program never sent to. Connects to port 53 (a DNS query over a
	// connected socket, as glibc's resolver sends them) are learned.
	NotSent uint64 `json:"not_sent,omitempty"`
	// Unattributed counts attempts whose executable could not be read
	// (the process had exited), by command name.
	Unattributed map[string]uint64 `json:"unattributed,omitempty"`
	// Previous is the policy in force before the session, and again after.
	Previous PolicyView `json:"previous"`
	// Observed is filled in the final report only.
	Observed []LearnExe `json:"observed,omitempty"`
	// Policy is the policy file learned from Observed (LearnedPolicy with
	// the host's own subnets), in the final report only.
	Policy string `json:"policy,omitempty"`
	// HostNets are the host's own subnets the Policy was learned with, in
	// the final report only (a client may learn again from Observed, e.g.
	// with LearnOptions.FoldNames).
	HostNets []netip.Prefix `json:"host_nets,omitempty"`
}

type learnKey struct {
	exe   string
	addr  netip.Addr
	port  uint16
	proto string
	in    bool
}

type learnSession struct {
	started  time.Time
	deadline time.Time // zero: none
	lease    time.Duration
	prev     *Policy
	policy   *Policy // the learning policy, as put in force
	timer    *time.Timer

	mu           sync.Mutex
	renewed      time.Time
	active       bool
	endReason    string
	events       uint64
	dropped      uint64
	notSent      uint64
	unattributed map[string]uint64
	dests        map[learnKey]*LearnDest
	exes         map[string]*LearnExe
	lookups      map[lookupKey]bool // learn_names.go
}

// StartLearning puts the learning policy in force for d (0: until
// StopLearning) and records every attempt. The client must call
// LearnStatus at least every lease, or the session ends by itself.
func (m *Manager) StartLearning(ctx context.Context, d, lease time.Duration) (LearnReport, error) {
	if d < 0 || lease <= 0 {
		return LearnReport{}, errors.New("learning duration must not be negative, and the lease must be positive")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ls := m.learn.Load(); ls != nil && ls.isActive() {
		return LearnReport{}, ErrLearning
	}
	if m.pending != nil {
		return LearnReport{}, &PendingError{Deadline: m.pending.deadline}
	}
	lp := LearningPolicy()
	if err := m.refuse(lp); err != nil {
		lp = LearningPolicyOutbound()
		if err := m.refuse(lp); err != nil {
			return LearnReport{}, fmt.Errorf("learning: %w", err)
		}
		m.log.Info("learning: this backend does not judge inbound; only what programs open is recorded")
	}
	if m.policy != nil {
		// The resolvers trusted before are still the ones whose answers
		// name what programs look up.
		lp.Resolvers = m.policy.Resolvers
	}
	m.setLearnDNS(true)
	if err := m.cfg.Backend.Apply(ctx, lp); err != nil {
		m.setLearnDNS(false)
		return LearnReport{}, fmt.Errorf("apply the learning policy: %w", err)
	}
	now := time.Now()
	ls := &learnSession{started: now, lease: lease, prev: m.policy, policy: lp, renewed: now, active: true,
		unattributed: map[string]uint64{}, dests: map[learnKey]*LearnDest{}, exes: map[string]*LearnExe{}}
	if d > 0 {
		ls.deadline = now.Add(d)
	}
	m.policy = lp
	m.learn.Store(ls)
	ls.timer = time.AfterFunc(ls.nextCheck(now), func() { m.learnTimer(ls) })
	m.log.Info("learning: every connection attempt is reported, none blocked", "duration", d, "previous_rules", len(ls.prev.Rules))
	return ls.report(false), nil
}

// nextCheck is how long until the session may have to end.
func (ls *learnSession) nextCheck(now time.Time) time.Duration {
	ls.mu.Lock()
	next := ls.renewed.Add(ls.lease)
	ls.mu.Unlock()
	if !ls.deadline.IsZero() && ls.deadline.Before(next) {
		next = ls.deadline
	}
	return max(next.Sub(now), time.Millisecond)
}

func (m *Manager) learnTimer(ls *learnSession) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.learn.Load() != ls || !ls.isActive() {
		return
	}
	now := time.Now()
	ls.mu.Lock()
	leaseGone := now.Sub(ls.renewed) >= ls.lease
	ls.mu.Unlock()
	switch {
	case !ls.deadline.IsZero() && !now.Before(ls.deadline):
		m.endLearningLocked(ls, "the duration is up")
	case leaseGone:
		m.endLearningLocked(ls, "the client stopped renewing its lease (it died or lost its connection)")
	default:
		ls.timer.Reset(ls.nextCheck(now))
	}
}

// endLearningLocked puts the previous policy back, if the learning policy
// is still the one in force. m.mu is held.
func (m *Manager) endLearningLocked(ls *learnSession, why string) {
	ls.mu.Lock()
	if !ls.active {
		ls.mu.Unlock()
		return
	}
	ls.active, ls.endReason = false, why
	ls.mu.Unlock()
	m.setLearnDNS(false)
	if ls.timer != nil {
		ls.timer.Stop()
	}
	if m.policy != ls.policy {
		m.log.Info("learning ended; the policy had been replaced meanwhile", "why", why)
		return
	}
	// Whatever happens, the manager's policy is the previous one again,
	// so a failed apply is put right by the next sync or restart.
	m.policy = ls.prev
	if err := m.cfg.Backend.Apply(context.Background(), ls.prev); err != nil {
		m.log.Error("learning ended but the previous policy could not be put back; run `exewall sync`", "err", err)
		ls.mu.Lock()
		ls.endReason += fmt.Sprintf("; putting the previous policy back failed: %v", err)
		ls.mu.Unlock()
		return
	}
	ls.mu.Lock()
	events, exes := ls.events, len(ls.exes)
	ls.mu.Unlock()
	m.log.Info("learning ended; previous policy back in force", "why", why, "events", events, "executables", exes)
}

// learnOverridden ends a session whose learning policy was just replaced
// (the policy file changed under a managed daemon). m.mu is held.
func (m *Manager) learnOverridden(why string) {
	if ls := m.learn.Load(); ls != nil && ls.isActive() {
		ls.mu.Lock()
		ls.active, ls.endReason = false, why
		ls.mu.Unlock()
		m.setLearnDNS(false)
		ls.timer.Stop()
		m.log.Warn("learning ended early", "why", why)
	}
}

// LearnStatus renews the session's lease and reports its progress.
func (m *Manager) LearnStatus() (LearnReport, error) {
	ls := m.learn.Load()
	if ls == nil {
		return LearnReport{}, ErrNoLearning
	}
	ls.mu.Lock()
	ls.renewed = time.Now()
	ls.mu.Unlock()
	return ls.report(false), nil
}

// StopLearning ends the session (putting the previous policy back if it
// is still running) and returns everything it saw, with the policy learned
// from it. The session is then gone.
func (m *Manager) StopLearning(ctx context.Context) (LearnReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.learn.Load()
	if ls == nil {
		return LearnReport{}, ErrNoLearning
	}
	m.endLearningLocked(ls, "stopped by the client")
	m.learn.Store(nil)
	rep := ls.report(true)
	rep.HostNets = m.cfg.HostNets()
	data, _, err := LearnedPolicy(rep, LearnOptions{HostNets: rep.HostNets, SameFile: sameFile, Ended: time.Now()})
	if err != nil {
		return rep, err
	}
	rep.Policy = string(data)
	return rep, nil
}

// stopLearningOnClose puts the previous policy back when the daemon stops
// during a session: enforcement left in the kernel must be the policy's,
// not the learning policy's. m.mu is held.
func (m *Manager) stopLearningOnClose() {
	if ls := m.learn.Load(); ls != nil {
		m.endLearningLocked(ls, "the daemon stopped")
	}
}

// learningActive reports whether edits must be refused. m.mu is held.
func (m *Manager) learningActive() bool {
	ls := m.learn.Load()
	return ls != nil && ls.isActive()
}

func (ls *learnSession) isActive() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.active
}

// record keeps one attempt; it runs on the reader goroutine.
func (ls *learnSession) record(v Violation) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.active {
		return
	}
	// One event may stand for repeats of one attempt (Violation.Count).
	n := max(v.Count, 1)
	ls.events += n
	if v.Exe == "" {
		comm := v.Comm
		if comm == "" {
			comm = "?"
		}
		if _, ok := ls.unattributed[comm]; ok || len(ls.unattributed) < 1000 {
			ls.unattributed[comm] += n
		} else {
			ls.dropped++
		}
		return
	}
	in := v.Inbound()
	if !in && v.ConnectOnly() && v.Dport != 53 {
		ls.notSent += n
		return
	}
	addr := v.Daddr.Unmap()
	k := learnKey{exe: v.Exe, addr: addr, port: v.Dport, proto: v.Proto, in: in}
	d := ls.dests[k]
	if d == nil {
		if len(ls.dests) >= maxLearnKeys {
			ls.dropped++
			return
		}
		d = &LearnDest{Addr: addr, Port: v.Dport, Proto: v.Proto, First: v.Time}
		if in {
			d.Direction = DirIn.String()
		}
		ls.dests[k] = d
	}
	d.Count += n
	d.Last = v.Time
	e := ls.exes[v.Exe]
	if e == nil {
		e = &LearnExe{Exe: v.Exe}
		ls.exes[v.Exe] = e
	}
	e.Events += n
	if len(e.Comms) < 8 && !containsStr(e.Comms, v.Comm) {
		e.Comms = append(e.Comms, v.Comm)
	}
	if len(e.UIDs) < 8 && !containsUID(e.UIDs, v.UID) {
		e.UIDs = append(e.UIDs, v.UID)
	}
}

func (ls *learnSession) report(full bool) LearnReport {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	r := LearnReport{Started: ls.started, Active: ls.active, EndReason: ls.endReason, Events: ls.events,
		Exes: len(ls.exes), Dropped: ls.dropped, NotSent: ls.notSent, Previous: ViewPolicy(ls.prev)}
	if !ls.deadline.IsZero() {
		d := ls.deadline
		r.Deadline = &d
	}
	if len(ls.unattributed) > 0 {
		r.Unattributed = make(map[string]uint64, len(ls.unattributed))
		for k, v := range ls.unattributed {
			r.Unattributed[k] = v
		}
	}
	if !full {
		return r
	}
	byExe := map[string][]LearnDest{}
	for k, d := range ls.dests {
		byExe[k.exe] = append(byExe[k.exe], *d)
	}
	for exe, e := range ls.exes {
		out := *e
		out.Comms = append([]string(nil), e.Comms...)
		out.UIDs = append([]uint32(nil), e.UIDs...)
		out.Dests = byExe[exe]
		out.Lookups = ls.lookupsOf(exe)
		sort.Slice(out.Dests, func(i, j int) bool { return lessDest(out.Dests[i], out.Dests[j]) })
		r.Observed = append(r.Observed, out)
	}
	sort.Slice(r.Observed, func(i, j int) bool { return r.Observed[i].Exe < r.Observed[j].Exe })
	return r
}

func lessDest(a, b LearnDest) bool {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c < 0
	}
	if a.Port != b.Port {
		return a.Port < b.Port
	}
	if a.Proto != b.Proto {
		return a.Proto < b.Proto
	}
	return a.Direction < b.Direction
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsUID(list []uint32, u uint32) bool {
	for _, x := range list {
		if x == u {
			return true
		}
	}
	return false
}

// sameFile reports whether two paths name one file (hard links, symlinks).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}
