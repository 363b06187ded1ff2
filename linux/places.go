//go:build linux

package linux

import (
	"maps"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// identifyCached resolves exe paths to identities, places and symlink
// names. A path whose resolution inotify has seen no change to since the
// last time costs no system call (exewatch.go); the others are resolved as
// before: the resolver caches identities by stat key, and places are
// re-walked only for paths whose stat() changed.
// It sets ids' epoch and current (compile.go).
func (b *Backend) identifyCached(paths []string, ids *identities) (resolved, error) {
	return b.identifyPaths(paths, ids, true, true)
}

// identifyToCheck is identifyCached for a check of the policy in force
// whose answers are compared and dropped: they do not become the memo,
// which would keep them beside the identities in force.
func (b *Backend) identifyToCheck(paths []string) (resolved, error) {
	return b.identifyPaths(paths, nil, true, false)
}

// IdentifyAll implements engine.BatchResolver: what Identify says of each
// path, resolved as an apply does (one kernel pass for hundreds of paths)
// and remembered for the apply that follows validation.
func (b *Backend) IdentifyAll(paths []string) (map[string]engine.FileID, error) {
	found, err := b.identifyPaths(paths, nil, false, true)
	if err != nil {
		return nil, err
	}
	out := make(map[string]engine.FileID, len(found))
	for p, e := range found {
		if e.hasID {
			out[p] = e.id
		}
	}
	return out, nil
}

// idMemo is the answer of the last resolution, for the paths in it that the
// watcher remembers: while no event moved the watcher's epoch, every one of
// them still resolves to the same, so the next resolution (the same policy
// with a rule changed) starts from a copy of this map instead of looking
// every path up again. Its map is shared with the callers that got it, who
// only read it.
type idMemo struct {
	epoch uint64
	found resolved
}

// identifyPaths is identifyCached; track says paths are the policy's (an
// apply, a check of the policy in force): whether the watcher must poll
// is then decided by them, and ids' epoch and current are set (when ids is
// not nil). keep says the answers may become the memo.
func (b *Backend) identifyPaths(paths []string, ids *identities, track, keep bool) (resolved, error) {
	w := b.exes
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	polled := w.polled
	if !track {
		defer func() { w.polled = polled }()
	}
	// An event drained later in this call moves the epoch past this one:
	// the memo made of this call's answers is then not used.
	epoch := w.epoch
	var found resolved
	var todo []string
	// remembered says whether every answer in found is an entry the
	// watcher keeps: only then may it become the memo as it is.
	remembered := true
	fromMemo := false
	if m := w.memo; m != nil && m.epoch == epoch && w.fd >= 0 {
		fromMemo = true
		hits := 0
		for _, p := range paths {
			if _, ok := m.found[p]; ok {
				hits++
			} else {
				todo = append(todo, p)
			}
		}
		if len(todo) == 0 && hits == len(m.found) {
			// The memo's paths (a policy with no executable added or
			// removed): its map as it is, which nobody changes in place
			// (patchIDs forgets the memo first). A copy costs 100,000
			// rules a few ms and 3 MB.
			found = m.found
		} else {
			found = maps.Clone(m.found)
		}
		if hits < len(m.found) { // paths of the memo not asked for now
			want := make(map[string]bool, len(paths))
			for _, p := range paths {
				want[p] = true
			}
			for p := range m.found {
				if !want[p] {
					delete(found, p)
				}
			}
		}
		// The memo's paths are remembered entries, still valid (the epoch
		// did not move): polled is decided by the others.
		w.polled = false
	} else {
		found = make(resolved, len(paths))
		todo = paths
		w.polled = false
	}
	// A first resolution (nothing remembered, no memo) that the watcher
	// remembers whole stores each answer of found, under its path, in the
	// watcher's empty entries: found is then exactly them, and nothing
	// need compare 100,000 entries to find so (shareEntries, 33 ms).
	first := !fromMemo && len(w.entries) == 0
	if len(todo) > 0 {
		var err error
		if remembered, err = b.identifyFresh(todo, found); err != nil {
			return nil, err
		}
	}
	// A validation (track false) that found the memo short of a few paths
	// answers from a copy and leaves the memo as it is: the apply after it
	// patches the identities in force (a CLI change), which would keep
	// that copy beside them, or asks again.
	if keep && (track || !fromMemo) {
		switch {
		case remembered && w.fd >= 0 && first:
			found, w.shared = w.entries, true
		case remembered && w.fd >= 0:
			found = w.shareEntries(found)
		}
		b.remember(epoch, found, remembered)
	}
	if track && ids != nil {
		ids.epoch, ids.current = epoch, remembered && !w.polled && w.fd >= 0
	}
	return found, nil
}

// remember makes found the memo: as it is when every answer in it is a
// remembered entry, else without the others (those are resolved again
// every time).
func (b *Backend) remember(epoch uint64, found resolved, all bool) {
	w := b.exes
	if w.fd < 0 {
		w.memo = nil
		return
	}
	m := &idMemo{epoch: epoch, found: found}
	if !all {
		m.found = resolved{}
		for p, e := range found {
			if w.entries[p] == e {
				m.found[p] = e
			}
		}
	}
	w.memo = m
}

// identifyFresh resolves paths without the memo: from the watcher's
// entries, else from the file system, adding to found. It reports whether
// every answer it added is an entry the watcher keeps.
func (b *Backend) identifyFresh(paths []string, found resolved) (bool, error) {
	w := b.exes
	all := true
	var todo []string
	for _, p := range paths {
		e := w.lookup(p)
		if e == nil {
			todo = append(todo, p)
			continue
		}
		found[p] = e
	}
	if len(todo) == 0 {
		return all, nil
	}
	watched := make([]bool, len(todo))
	for i, p := range todo {
		watched[i] = w.prepare(p)
	}
	w.drain()
	seq := w.seq
	w.reals, w.plain = map[string]string{}, map[string]bool{}
	defer func() { w.reals, w.plain = nil, nil }()
	if len(w.entries) == 0 && len(todo) > 1024 {
		w.entries, w.shared = make(resolved, len(todo)), false // a policy's first resolution
	}
	ans := make([]pathAnswer, len(todo))
	if err := b.identifyAnswers(todo, ans); err != nil {
		return false, err
	}
	// Places: from the cache while the stat key holds, else resolved.
	var stale []int
	for i, p := range todo {
		a := &ans[i]
		if e, hit := b.places[p]; a.hasKey && hit && e.key == a.key {
			a.pl, a.hasPl = e.val, true
			continue
		}
		stale = append(stale, i)
	}
	if err := b.resolvePlaces(todo, stale, ans); err != nil {
		return false, err
	}
	// What inotify now watches needs no stat key: the stat caches forget it
	// (a path seen changed is resolved afresh, stat key and all), and keep
	// what was resolved of the others. (Caching everything, then
	// forgetting most of it, cost a policy's first apply a map entry made
	// and dropped per path in each cache.)
	var remembered []string
	isRemembered := make([]bool, len(todo))
	defer func() {
		for i, p := range todo {
			if a := &ans[i]; a.stale && !isRemembered[i] {
				b.places.storeOne(p, a.key, a.hasKey, a.pl, a.hasPl)
			}
		}
		b.resolver.rememberAnswers(todo, ans, isRemembered)
		for _, p := range remembered {
			delete(b.places, p)
		}
		b.resolver.forget(remembered)
	}()
	for i, p := range todo {
		a := &ans[i]
		e := &exeEntry{}
		if a.link {
			e.setLinks(symlinkNames(p), nil)
		}
		e.id, e.hasID = a.id, a.hasID
		e.pl, e.hasPl = a.pl, a.hasPl
		if e.hasID || e.hasPl || e.links != nil {
			found[p] = e
		}
		stored := false
		if watched[i] && e.hasID {
			if !a.link && w.plainDir(filepath.Dir(p)) {
				w.storeOwn(p, seq, e)
				stored = true
			} else if real, err := w.realPath(p, !a.link); err == nil {
				stored = w.store(p, seq, e, chainOf(p, real, a.link))
			}
		}
		w.polled = w.polled || !stored
		if stored {
			remembered = append(remembered, p)
			isRemembered[i] = true
		} else if e.hasID || e.hasPl || e.links != nil {
			all = false
		}
	}
	return all, nil
}

// identifyAnswers puts in ans (by position) each path's stat key, whether
// it is a symlink, and its identity: a path the resolver has an answer for
// is lstat'ed first, so that its stat key may save the open; the others
// (all of them in a policy's first resolution) are opened once, key and
// identity (identifyFirst).
func (b *Backend) identifyAnswers(todo []string, ans []pathAnswer) error {
	known, unknown := b.resolver.split(todo)
	if len(known) == 0 {
		return b.resolver.identifyFirst(todo, ans)
	}
	pick := func(idx []int) []string {
		out := make([]string, len(idx))
		for k, i := range idx {
			out[k] = todo[i]
		}
		return out
	}
	if len(unknown) > 0 {
		ua := make([]pathAnswer, len(unknown))
		if err := b.resolver.identifyFirst(pick(unknown), ua); err != nil {
			return err
		}
		for k, i := range unknown {
			ans[i] = ua[k]
		}
	}
	kp := pick(known)
	keys, links := lstatKeys(kp)
	out, computed, _, err := b.resolver.identifyUncached(kp, keys)
	if err != nil {
		return err
	}
	isComputed := make(map[string]bool, len(computed))
	for _, p := range computed {
		isComputed[p] = true
	}
	for _, i := range known {
		p, a := todo[i], &ans[i]
		a.key, a.hasKey = keys[p]
		a.link = links[p]
		a.id, a.hasID = out[p]
		a.computed = isComputed[p]
	}
	return nil
}

// lstatKeys lstats every path once: links says which are symlinks, keys
// holds the stat key of each path stat() succeeds on (for a path that is no
// symlink lstat's answer is stat's).
func lstatKeys(paths []string) (keys map[string]statKey, links map[string]bool) {
	sts := make([]unix.Stat_t, len(paths))
	kind := make([]uint8, len(paths)) // 0: no key, 1: a file, 2: a symlink with a key, 3: one without
	inParallel(len(paths), 512, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if err := unix.Lstat(paths[i], &sts[i]); err != nil {
				continue
			}
			kind[i] = 1
			if sts[i].Mode&unix.S_IFMT == unix.S_IFLNK {
				kind[i] = 2
				if err := unix.Stat(paths[i], &sts[i]); err != nil {
					kind[i] = 3
				}
			}
		}
	})
	keys, links = make(map[string]statKey, len(paths)), map[string]bool{}
	for i, p := range paths {
		if kind[i] >= 2 {
			links[p] = true
		}
		if kind[i] == 1 || kind[i] == 2 {
			keys[p] = keyOf(&sts[i])
		}
	}
	return keys, links
}

// resolvePlaces finds where each executable paths[i] (i in idx) lives
// (through symlinks, as exec does), so the exec hook can recognise a new
// file renamed over it; ans[i] says whether it is a symlink and gets the
// place. The others live in their directory's real path (w.realDir, asked
// once per directory), and each directory's identity is asked once.
func (b *Backend) resolvePlaces(paths []string, idx []int, ans []pathAnswer) error {
	dirs := make([]string, len(idx)) // the real parent dir of each, "" for none
	names := make([]string, len(idx))
	var want []string
	wanted := map[string]bool{}
	for k, i := range idx {
		p := paths[i]
		ans[i].stale = true
		var real string
		if ans[i].link {
			var err error
			if real, err = filepath.EvalSymlinks(p); err != nil {
				real = filepath.Clean(p) // dangling: its directory may be there
			}
		} else if dir, err := b.exes.realDir(filepath.Dir(p)); err == nil {
			// The place's name is then a part of the policy's own string,
			// not of a copy kept for it (2-3 MB at 100,000 rules).
			real = joinAs(dir, p)
		} else {
			real = filepath.Clean(p) // not there yet: its directory may be
		}
		name := filepath.Base(real)
		if len(name) >= maxName {
			continue
		}
		dir := filepath.Dir(real)
		dirs[k], names[k] = dir, name
		if !wanted[dir] {
			wanted[dir] = true
			want = append(want, dir)
		}
	}
	ids, err := b.resolver.identifyAll(want)
	if err != nil {
		return err
	}
	for k, i := range idx {
		if dirs[k] == "" {
			continue
		}
		if id, ok := ids[dirs[k]]; ok {
			ans[i].pl, ans[i].hasPl = place{dir: id, name: names[k]}, true
		}
	}
	return nil
}

// joinAs is filepath.Join(dir, filepath.Base(p)), which is p itself (the
// same string, no copy) when p is dir, a slash and that name, with dir
// clean: the common case, where Join made and cleaned a new string per
// path.
func joinAs(dir, p string) string {
	base := filepath.Base(p)
	if base != "." && base != ".." && len(dir) > 1 && dir[len(dir)-1] != '/' && len(p) == len(dir)+1+len(base) && p[len(dir)] == '/' && p[:len(dir)] == dir && p[len(dir)+1:] == base {
		return p
	}
	return filepath.Join(dir, base)
}

// pruneLearned forgets identities the exec hook recorded once userspace has
// adopted them into exe_rules, and keeps learned_count honest.
func (b *Backend) pruneLearned(ids identities) {
	var n uint32
	if err := b.objs.LearnedCount.Lookup(uint32(0), &n); err == nil && n == 0 {
		return // nothing learned: no need to list every identity
	}
	known := make(map[datapathFileId]bool, ids.exe.len())
	ids.exe.each(func(id engine.FileID) {
		known[datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino}] = true
	})
	var k datapathFileId
	var v datapathPathKey
	var stale []datapathFileId
	remaining := uint32(0)
	it := b.objs.ExeLearned.Iterate()
	for it.Next(&k, &v) {
		if known[k] {
			stale = append(stale, k)
		} else {
			remaining++
		}
	}
	for _, k := range stale {
		b.objs.ExeLearned.Delete(k)
	}
	pruned := len(stale)
	stale = stale[:0]
	var h uint64
	nit := b.objs.ExeNamed.Iterate()
	for nit.Next(&k, &h) {
		if known[k] {
			stale = append(stale, k)
		} else {
			remaining++
		}
	}
	for _, k := range stale {
		b.objs.ExeNamed.Delete(k)
	}
	if remaining == 0 && pruned+len(stale) > 0 {
		b.objs.LearnedCount.Update(uint32(0), uint32(0), 0)
	}
}
