//go:build linux

package linux

import (
	"path/filepath"
	"slices"
	"time"

	"github.com/exewall/exewall/engine"
)

// watch re-resolves executables and cgroups so that a rule whose file
// appears later, or is replaced by a package upgrade (new inode renamed
// over the old path), is enforced within one interval.
func (b *Backend) watch() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			b.refresh()
			b.sweepGates()
			b.expireNames()
		}
	}
}

func (b *Backend) refresh() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.policy == nil || !b.identitiesChanged() {
		return
	}
	ids, err := b.resolve(b.policy)
	if err != nil {
		b.log.Warn("re-resolve identities", "err", err)
		return
	}
	if err := b.applyLocked(b.policy, ids); err != nil {
		b.log.Warn("re-apply after identity change", "err", err)
		return
	}
	b.log.Info("identities changed; policy re-applied")
}

func (b *Backend) identitiesChanged() bool {
	// The resolver asks the kernel again only about paths whose stat()
	// changed, so this costs one stat() per executable.
	var paths []string
	for _, r := range b.policy.Rules {
		if r.Exe != "" {
			paths = append(paths, r.Exe)
		}
	}
	found, err := b.resolver.identifyAll(paths)
	if err != nil {
		return false
	}
	for path, id := range found {
		if !slices.Contains(b.ids.exe[path], id) {
			return true
		}
	}
	return b.cgroupsChanged()
}

func (b *Backend) cgroupsChanged() bool {
	for _, r := range b.policy.Rules {
		if r.Cgroup == "" {
			continue
		}
		c := engine.CleanCgroup(r.Cgroup)
		id, err := cgroupID(filepath.Join(b.cgroupRoot, c))
		old, had := b.ids.cgroups[c]
		if (err == nil) != had || (err == nil && id != old) {
			return true
		}
	}
	return false
}
