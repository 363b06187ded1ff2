//go:build linux

package linux

import (
	"path/filepath"
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

// fullCheckTicks is how many watch intervals pass between two checks of
// every exe path by stat(), for what inotify does not report (a mount over
// a directory); in between only the paths inotify saw change are checked.
const fullCheckTicks = 300

func (b *Backend) identitiesChanged() bool {
	b.ticks++
	full := b.ticks%fullCheckTicks == 0
	if full {
		b.exes.invalidateAll()
	}
	b.exes.mu.Lock()
	b.exes.drain()
	events := b.exes.events
	b.exes.events = false
	watching := b.exes.fd >= 0 && !b.exes.polled
	b.exes.mu.Unlock()
	if watching && !events && !full {
		return b.cgroupsChanged()
	}
	var paths []string
	for _, r := range b.policy.Rules {
		if r.Exe != "" {
			paths = append(paths, r.Exe)
		}
	}
	found, err := b.identifyToCheck(paths)
	if err != nil {
		return false
	}
	for path, e := range found {
		if e.hasID && !b.ids.exe.contains(path, e.id) {
			return true
		}
	}
	if !sameWhere(found, b.ids.exe.cur) {
		return true
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
