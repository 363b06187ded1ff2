//go:build linux

package linux

import (
	"errors"
	"maps"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// exeWatch remembers what resolving each exe path found (identity, place,
// symlink names) for as long as inotify reports no change to a name the
// resolution went through: an apply then resolves only the paths that are
// new or changed, without a system call for the others. Every directory the
// names live in is watched (by its real path); an event for name n in
// directory d marks the component d/n changed. Without inotify, or for a
// path whose directories cannot all be watched, nothing is remembered and
// every apply resolves the path again (stat() decides, as before).
type exeWatch struct {
	mu      sync.Mutex
	fd      int // inotify, non-blocking; -1 when unavailable
	wdDir   map[int32]string
	dirWd   map[string]int32
	seq     uint32            // events seen so far (step)
	floor   uint32            // entries validated before this are stale (overflow, full re-check)
	changed map[string]uint32 // component -> seq of its last event
	entries resolved
	// shared says entries is also the memo's and maybe the identities in
	// force (shareEntries): copied before it changes.
	shared bool
	buf    []byte
	polled bool              // some exe path of the last resolution is not remembered: check it at every interval
	events bool              // events came since the watcher last looked (whoever drained them)
	extra  map[string]int    // deps of entries that have their own list (symlinks met), counted
	reals  map[string]string // realDir's answers during one resolution
	plain  map[string]bool   // plainDir's answers during one resolution
	// epoch moves whenever an entry may have gone stale (an event for a
	// name some entry depends on, an overflow, a full re-check): memo, the
	// last resolution's answers, holds while it stays (places.go).
	epoch uint64
	memo  *idMemo
}

// exeEntry is what resolving one exe path found, valid while no component
// it depends on changed after seq.
type exeEntry struct {
	seq   uint32 // 32 bits (exeWatch.step): an entry is 64 bytes, not 80 (1.6 MB at 100,000 rules)
	hasID bool
	hasPl bool
	id    engine.FileID
	pl    place
	links *exeLinks // nil for a path whose resolution met no symlink (nearly all)
}

// exeLinks is what an entry keeps of the symlinks its resolution met: apart,
// since few paths have any (an entry is then 80 bytes, not 128: 4.8 MB at
// 100,000 rules).
type exeLinks struct {
	names []string // symlinkNames; nil for a path that is no symlink
	deps  []string // components in real form when they differ from the path's prefixes
}

func (e *exeEntry) names() []string {
	if e.links == nil {
		return nil
	}
	return e.links.names
}

func (e *exeEntry) deps() []string {
	if e.links == nil {
		return nil
	}
	return e.links.deps
}

func (e *exeEntry) setLinks(names, deps []string) {
	e.links = nil
	if names != nil || deps != nil {
		e.links = &exeLinks{names: names, deps: deps}
	}
}

// maxChanged bounds the remembered events: past it they are forgotten and
// every entry is re-checked once.
const maxChanged = 4096

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

func newExeWatch() *exeWatch {
	w := &exeWatch{fd: -1, wdDir: map[int32]string{}, dirWd: map[string]int32{}, changed: map[string]uint32{}, entries: resolved{}, extra: map[string]int{}}
	if fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC); err == nil {
		w.fd = fd
		w.buf = make([]byte, 64<<10)
	}
	return w
}

func (w *exeWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
	w.entries, w.shared = resolved{}, false
	w.extra = map[string]int{}
	w.epoch++
	w.memo = nil
}

// drain reads the pending events.
func (w *exeWatch) drain() {
	if w.fd < 0 {
		return
	}
	for {
		n, err := unix.Read(w.fd, w.buf)
		if n <= 0 || err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			name := w.buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.step()
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.floor, w.events = w.seq, true
				w.epoch++
				continue
			}
			dir, ok := w.wdDir[ev.Wd]
			if !ok {
				continue
			}
			comp := dir
			if i := strings.IndexByte(string(name), 0); i >= 0 {
				name = name[:i]
			}
			if len(name) > 0 {
				comp = filepath.Join(dir, string(name))
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(w.wdDir, ev.Wd)
				delete(w.dirWd, dir)
			}
			// Only names a remembered resolution went through matter: an
			// exe path, a watched directory, a name on a symlink chain.
			if _, ok := w.entries[comp]; !ok && w.extra[comp] == 0 {
				if _, ok := w.dirWd[comp]; !ok && comp != dir {
					continue
				}
			}
			w.events = true
			w.epoch++
			if len(w.changed) >= maxChanged {
				clear(w.changed)
				w.floor = w.seq
			}
			w.changed[comp] = w.seq
		}
	}
}

// invalidateAll makes every entry stale (the periodic full re-check, for
// what inotify does not see: mounts).
func (w *exeWatch) invalidateAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.step()
	w.floor = w.seq
	w.epoch++
	clear(w.changed)
}

// step counts one more event (or full re-check). The count has 32 bits:
// at its end, once in 4 billion events, every entry is forgotten and it
// starts again (the next resolution looks every path up).
func (w *exeWatch) step() {
	if w.seq == math.MaxUint32 {
		w.entries, w.shared = resolved{}, false
		w.extra = map[string]int{}
		clear(w.changed)
		w.seq, w.floor = 0, 0
		w.epoch++
		w.memo = nil
		w.events = true
	}
	w.seq++
}

// lookup returns the still-valid entry of path, or nil.
func (w *exeWatch) lookup(path string) *exeEntry {
	e := w.entries[path]
	if e == nil {
		return nil
	}
	if e.seq < w.floor || !w.fresh(e, path) {
		w.forget(path, e)
		return nil
	}
	return e
}

func (w *exeWatch) fresh(e *exeEntry, path string) bool {
	if len(w.changed) == 0 {
		return true
	}
	if deps := e.deps(); deps != nil {
		for _, d := range deps {
			if w.changed[d] > e.seq {
				return false
			}
		}
		return true
	}
	for i := 1; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if w.changed[path[:i]] > e.seq {
				return false
			}
		}
	}
	return true
}

// watchDir watches a real directory; false when it cannot.
func (w *exeWatch) watchDir(dir string) bool {
	if _, ok := w.dirWd[dir]; ok {
		return true
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		return false
	}
	w.wdDir[int32(wd)] = dir
	w.dirWd[dir] = int32(wd)
	return true
}

// prepare watches the directories of path's own components before it is
// resolved, so that a change during the resolution is seen; false when path
// cannot be watched.
func (w *exeWatch) prepare(path string) bool {
	if w.fd < 0 || !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '/' {
			continue
		}
		dir := path[:max(i, 1)]
		if _, ok := w.dirWd[dir]; ok {
			continue
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return false // not there yet: resolved again at every apply
		}
		if !w.watchDir(real) {
			return false
		}
	}
	return true
}

// store records what path resolved to. chain is every name its resolution
// went through (the path's prefixes, the symlinks and their targets'
// prefixes); their real directories are watched too.
func (w *exeWatch) store(path string, seq uint32, e *exeEntry, chain []string) bool {
	var deps []string
	same := true
	for _, c := range chain {
		real, err := w.realDir(filepath.Dir(c))
		if err != nil || !w.watchDir(real) {
			return false
		}
		comp := filepath.Join(real, filepath.Base(c))
		if c == "/" {
			comp = "/"
		}
		deps = append(deps, comp)
		same = same && comp == c
	}
	if same && len(chain) == components(path) {
		deps = nil // the path's own prefixes: computed when checked
	}
	e.seq = seq
	e.setLinks(e.names(), deps)
	w.own()
	if old := w.entries[path]; old != nil {
		w.forget(path, old)
	}
	w.entries[path] = e
	for _, d := range deps {
		w.extra[d]++
	}
	return true
}

func (w *exeWatch) forget(path string, e *exeEntry) {
	w.own()
	delete(w.entries, path)
	for _, d := range e.deps() {
		if w.extra[d]--; w.extra[d] <= 0 {
			delete(w.extra, d)
		}
	}
}

// storeOwn is store for a path that is no symlink and whose directories
// are all their own real paths, watched (plainDir of its directory): its
// chain is its own prefixes, checked when looked up.
func (w *exeWatch) storeOwn(path string, seq uint32, e *exeEntry) {
	e.seq = seq
	e.setLinks(e.names(), nil)
	w.own()
	if old := w.entries[path]; old != nil {
		w.forget(path, old)
	}
	w.entries[path] = e
}

// own makes entries the watcher's alone before it changes.
func (w *exeWatch) own() {
	if w.shared {
		w.entries, w.shared = maps.Clone(w.entries), false
	}
}

// shareEntries is found, or the watcher's entries themselves when found
// holds exactly them: a policy whose every path is remembered (nearly
// always) then keeps one map of its resolution, not two (2.6 MB at
// 100,000 rules). Whoever gets it only reads it (patchIDs copies it).
func (w *exeWatch) shareEntries(found resolved) resolved {
	if len(found) != len(w.entries) {
		return found
	}
	if found.is(w.entries) {
		// Shared already (an apply of the memo's paths, which the last
		// one shared).
		w.shared = true
		return found
	}
	for p, e := range found {
		if w.entries[p] != e {
			return found
		}
	}
	w.shared = true
	return w.entries
}

// plainDir says whether dir and every directory above it are their own
// real paths and watched: then store of a file in dir that is no symlink
// keeps no deps. Asked once per directory during one resolution (many exe
// paths share their directories).
func (w *exeWatch) plainDir(dir string) bool {
	if ok, done := w.plain[dir]; done {
		return ok
	}
	ok := true
	if dir != "/" {
		ok = w.plainDir(filepath.Dir(dir))
	}
	if ok {
		real, err := w.realDir(dir)
		ok = err == nil && real == dir && w.watchDir(real)
	}
	w.plain[dir] = ok
	return ok
}

// realDir is filepath.EvalSymlinks of a directory, remembered for the
// resolution in progress (many exe paths share their directories).
func (w *exeWatch) realDir(dir string) (string, error) {
	if r, ok := w.reals[dir]; ok {
		return r, nil
	}
	r, err := filepath.EvalSymlinks(dir)
	if err == nil {
		w.reals[dir] = r
	}
	return r, err
}

// realPath is where path leads; notLink says path itself is no symlink
// (symlinkNames found none), so its directory's real path is enough.
func (w *exeWatch) realPath(path string, notLink bool) (string, error) {
	if !notLink {
		return filepath.EvalSymlinks(path)
	}
	dir, err := w.realDir(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(path)), nil
}

// components counts the prefixes fresh checks for a path without deps.
func components(path string) int {
	return strings.Count(path, "/")
}

// prefixes lists /a, /a/b, /a/b/c for /a/b/c.
func prefixes(path string) []string {
	var out []string
	for i := 1; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			out = append(out, path[:i])
		}
	}
	return out
}

// chainOf lists the names resolving path goes through: its prefixes, and
// for every symlink met, its target's prefixes (real is where it ends;
// link says path itself is a symlink).
func chainOf(path, real string, link bool) []string {
	out := prefixes(path)
	p := path
	for i := 0; link && i < maxSymlinkHops; i++ {
		target, err := readlinkAbs(p)
		if err != nil {
			break
		}
		out = append(out, prefixes(target)...)
		p = target
	}
	if real != "" && real != path {
		out = append(out, prefixes(real)...)
	}
	return dedupe(out)
}

func readlinkAbs(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlink(p, buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", errors.New("link target too long")
	}
	t := string(buf[:n])
	if !filepath.IsAbs(t) {
		t = filepath.Join(filepath.Dir(p), t)
	}
	return filepath.Clean(t), nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
