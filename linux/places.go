//go:build linux

package linux

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// cachedPlace is where an executable was found to live, and the stat() of
// its path when that was computed: a replaced or moved file changes it.
type cachedPlace struct {
	key   statKey
	place place
}

// identifyCached resolves paths to identities (the resolver caches those by
// stat key) and to places, re-walking symlinks only for paths whose stat()
// changed since the last apply.
func (b *Backend) identifyCached(paths []string, places map[string]place) (map[string]engine.FileID, error) {
	found, err := b.resolver.IdentifyAll(paths)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]statKey, len(paths))
	var todo []string
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			todo = append(todo, p) // missing: its directory's place may still be known
			continue
		}
		key := statKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim}
		if c, ok := b.places[p]; ok && c.key == key {
			places[p] = c.place
			continue
		}
		keys[p] = key
		todo = append(todo, p)
	}
	fresh := map[string]place{}
	if err := b.resolvePlaces(todo, fresh); err != nil {
		return nil, err
	}
	for _, p := range todo {
		pl, ok := fresh[p]
		if !ok {
			delete(b.places, p)
			continue
		}
		places[p] = pl
		if key, ok := keys[p]; ok {
			b.places[p] = cachedPlace{key: key, place: pl}
		}
	}
	return found, nil
}

// resolvePlaces finds where each executable lives (through symlinks, as exec
// does), so the exec hook can recognise a new file renamed over it.
func (b *Backend) resolvePlaces(paths []string, out map[string]place) error {
	dirs := map[string]string{} // exe path -> real parent dir
	names := map[string]string{}
	var want []string
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			real = filepath.Clean(p) // not there yet: its directory may be
		}
		name := filepath.Base(real)
		if len(name) >= maxName {
			continue
		}
		dirs[p], names[p] = filepath.Dir(real), name
		want = append(want, filepath.Dir(real))
	}
	ids, err := b.resolver.IdentifyAll(want)
	if err != nil {
		return err
	}
	for p, dir := range dirs {
		if id, ok := ids[dir]; ok {
			out[p] = place{dir: id, name: names[p]}
		}
	}
	return nil
}

// pruneLearned forgets identities the exec hook recorded once userspace has
// adopted them into exe_rules, and keeps learned_count honest.
func (b *Backend) pruneLearned(ids identities) {
	known := map[datapathFileId]bool{}
	for _, list := range ids.exe {
		for _, id := range list {
			known[datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino}] = true
		}
	}
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
