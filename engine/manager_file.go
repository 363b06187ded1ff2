package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Load reads the policy file and puts it in force. A missing file is
// created with DefaultPolicyFile. A rollback left by a daemon that died
// during a confirm-within window is carried out first. With no
// PolicyFile, Load puts ManagerConfig.Policy (or DefaultPolicy) in force.
func (m *Manager) Load(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	path := m.cfg.PolicyFile
	if path == "" {
		return m.loadMemory(ctx)
	}
	m.managed = m.writable()
	if err := m.recoverRollback(); err != nil {
		return err
	}
	data, err := ReadPolicyFile(path)
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
	if EmptyPolicy(data) {
		return fmt.Errorf("%s: %w", path, ErrEmptyPolicyFile)
	}
	p, err := m.checkAhead(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cuts := m.applyCuts(ctx, DefaultPolicy(), p, "daemon start")
	// p becomes the policy in force, never changed in place: the backend
	// keeps it instead of a copy (a copy of 100,000 rules is 17 MB).
	if err := m.cfg.Backend.Apply(WithOwnedPolicy(ctx), p); err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	m.policy = p
	m.text.set(data)
	m.reportCuts("daemon start", cuts)
	if m.managed != nil {
		m.log.Info("policy file is not writable: running managed, CLI edits refused", "path", path, "reason", m.managed)
	}
	return nil
}

// loadMemory is Load without a policy file. m.mu is held.
func (m *Manager) loadMemory(ctx context.Context) error {
	p := m.cfg.Policy
	if p == nil {
		p = DefaultPolicy()
	}
	p = p.Clone()
	if err := m.validate(p); err != nil {
		return err
	}
	data, err := Marshal(p)
	if err != nil {
		return err
	}
	cuts := m.applyCuts(ctx, DefaultPolicy(), p, "start")
	if err := m.cfg.Backend.Apply(WithOwnedPolicy(ctx), p); err != nil { // p is a copy of ours
		return fmt.Errorf("apply: %w", err)
	}
	m.policy = p
	m.text.set(data)
	m.reportCuts("start", cuts)
	return nil
}

// writable returns nil when the policy file is ours to write (or there is
// no file), or a *ManagedError.
func (m *Manager) writable() error {
	if m.cfg.PolicyFile == "" {
		return nil
	}
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

// commit puts p in force, then makes data the policy file; if the write
// fails the old policy is put back so that the kernel and the file keep
// agreeing. sc, if not nil, is the scan of data (an edit's).
func (m *Manager) commit(ctx context.Context, p *Policy, data []byte, sc *scannedText) error {
	// The new file is written and synced beside the policy file while p
	// is put in force, and renamed over it only once p is: a failed apply
	// leaves the file as it was.
	type prepared struct {
		f   *pendingFile
		err error
	}
	var ready chan prepared
	if m.cfg.PolicyFile != "" {
		ready = make(chan prepared, 1)
		go func(path string) {
			f, err := prepareFileAtomic(path, data)
			ready <- prepared{f, err}
		}(m.cfg.PolicyFile)
	}
	// p becomes the policy in force, which is never changed in place.
	if err := m.cfg.Backend.Apply(WithOwnedPolicy(ctx), p); err != nil {
		if ready != nil {
			if pr := <-ready; pr.f != nil {
				pr.f.abort()
			}
		}
		return fmt.Errorf("apply: %w", err)
	}
	if m.cfg.PolicyFile == "" {
		m.policy, m.fileErr = p, nil
		m.setText(data, sc)
		return nil
	}
	pr := <-ready
	err := pr.err
	if err == nil {
		err = pr.f.commit()
	}
	if err != nil {
		if rerr := m.cfg.Backend.Apply(WithOwnedPolicy(context.WithoutCancel(ctx)), m.policy); rerr != nil {
			m.log.Error("policy file not written and the previous policy could not be restored", "err", rerr)
		}
		return err
	}
	m.policy, m.fileErr = p, nil
	m.setText(data, sc)
	return nil
}

// setText makes data the text in force; an edit's scan of it keeps it
// (which saves packing it).
func (m *Manager) setText(data []byte, sc *scannedText) {
	if sc != nil && sc.of(data) {
		m.text.setScanned(sc)
	} else {
		m.text.set(data)
	}
}

// ApplyFile replaces the whole policy with the policy file data, which is
// written verbatim (the new file's comments are the user's). With
// confirmWithin > 0 the previous policy comes back by itself unless
// Confirm is called in time.
//
// A policy that would cut sockets listening now is refused with a
// *CutError unless opts has Force.
func (m *Manager) ApplyFile(ctx context.Context, data []byte, confirmWithin time.Duration, opts ...ChangeOption) (*Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.editable(); err != nil {
		return nil, err
	}
	if len(data) > MaxPolicyFile {
		return nil, fmt.Errorf("policy is larger than %d bytes", MaxPolicyFile)
	}
	if EmptyPolicy(data) {
		// The daemon would refuse this file at its next start.
		return nil, ErrEmptyPolicyFile
	}
	p, err := m.check(data)
	if err != nil {
		return nil, err
	}
	cuts, err := m.checkCuts(ctx, p, changeOptions(opts))
	if err != nil {
		return nil, err
	}
	prev := m.policy
	prevSrc, err := m.text.read()
	if err != nil {
		return nil, fmt.Errorf("the policy in force: %w", err)
	}
	if confirmWithin > 0 && m.cfg.RollbackFile != "" {
		// Saved before the change, so a daemon killed in between still
		// knows what to go back to.
		if err := WriteFileAtomic(m.cfg.RollbackFile, prevSrc); err != nil {
			return nil, fmt.Errorf("save rollback: %w", err)
		}
	}
	if err := m.commit(ctx, p, data, nil); err != nil {
		m.removeRollbackFile()
		return nil, err
	}
	m.reportCuts("forced apply", cuts)
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
	cuts := m.applyCuts(context.Background(), m.policy, pa.prev, "rollback")
	if err := m.commit(context.Background(), pa.prev, pa.prevSrc, nil); err != nil {
		m.log.Error("roll back unconfirmed apply", "err", err)
		return
	}
	m.reportCuts("rollback of an unconfirmed apply", cuts)
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
	if m.cfg.RollbackFile == "" || m.cfg.PolicyFile == "" {
		return nil
	}
	data, err := ReadPolicyFile(m.cfg.RollbackFile)
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

// Reload reads the policy file again and puts it in force if it changed
// (without a PolicyFile it does nothing).
// A file that fails validation, is empty (truncated) or is gone is refused
// and the policy in force stays; Status says so until a good file is read.
// A deleted file is written back from the policy in force when the file is
// ours to write, so that a restarted daemon still enforces it (a missing
// file at start-up would mean the default policy).
func (m *Manager) Reload(ctx context.Context) (changed bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.PolicyFile == "" {
		return false, nil // nothing to read: the policy is in memory
	}
	data, err := ReadPolicyFile(m.cfg.PolicyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, m.restoreDeleted()
	}
	if err != nil {
		return false, m.refuseFile(fmt.Errorf("read policy: %w", err))
	}
	m.managed = m.writable()
	if m.text.same(data) {
		m.fileErr = nil
		return false, nil
	}
	if EmptyPolicy(data) {
		return false, m.refuseFile(fmt.Errorf("%s: %w", m.cfg.PolicyFile, ErrEmptyPolicyFile))
	}
	p, err := m.check(data)
	if err != nil {
		return false, m.refuseFile(fmt.Errorf("%s: %w", m.cfg.PolicyFile, err))
	}
	why := "reload of the policy file"
	if m.managed != nil {
		why = "reload of the managed policy file"
	}
	cuts := m.applyCuts(ctx, m.policy, p, why)
	if err := m.cfg.Backend.Apply(WithOwnedPolicy(ctx), p); err != nil {
		return false, m.refuseFile(fmt.Errorf("apply %s: %w", m.cfg.PolicyFile, err))
	}
	m.policy, m.fileErr = p, nil
	m.text.set(data)
	m.reportCuts(why, cuts)
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
	data, err := m.text.read()
	if err == nil {
		err = WriteFileAtomic(m.cfg.PolicyFile, data)
	}
	if err != nil {
		return m.refuseFile(fmt.Errorf("policy file %s was deleted; writing it back: %w", m.cfg.PolicyFile, err))
	}
	m.fileErr = nil
	m.log.Warn("the policy file was deleted; the policy in force stays and was written back to it (to remove every rule, apply a policy with `rules: []`)",
		"path", m.cfg.PolicyFile, "rules", len(m.policy.Rules))
	return nil
}
