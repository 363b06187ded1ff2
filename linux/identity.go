//go:build linux

package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// resolver resolves executables to the identity the datapath reads
// (exe_file->f_inode): it opens each file and asks a task_file iterator what
// the kernel holds for that fd. stat() is not used because it disagrees with
// the kernel on overlayfs and btrfs. When iterators cannot load it falls back
// to stat() and says why in fallback. The backend owns the one resolver.
type resolver struct {
	mu       sync.Mutex
	prog     *ebpf.Program
	iter     *link.Iter
	cache    statCache[engine.FileID] // by path; see identifyAll
	fallback error                    // why the kernel view is unavailable, nil when it is used
}

// newResolver loads the iterator (unless disabled is non-nil: the reason it
// may not be used) with load, nil meaning a plain load; on failure the
// resolver still works through stat().
func newResolver(disabled error, load func(*ebpf.CollectionSpec, *fileidObjects) error) *resolver {
	r := &resolver{}
	err := disabled
	if err == nil {
		err = r.load(load)
	}
	if err != nil {
		r.fallback = fmt.Errorf("task_file iterator unavailable, using stat(): %w", err)
	}
	return r
}

func (r *resolver) load(load func(*ebpf.CollectionSpec, *fileidObjects) error) error {
	spec, err := loadFileid()
	if err != nil {
		return err
	}
	if load == nil {
		load = func(spec *ebpf.CollectionSpec, objs *fileidObjects) error { return spec.LoadAndAssign(objs, nil) }
	}
	var objs fileidObjects
	if err := load(spec, &objs); err != nil {
		return notSupported("load the identity iterator", err)
	}
	iter, err := attachOwnIter(objs.ExewallFileid)
	if err != nil {
		iter, err = link.AttachIter(link.IterOptions{Program: objs.ExewallFileid})
	}
	if err != nil {
		objs.Close()
		return notSupported("attach the identity iterator", err)
	}
	r.prog, r.iter = objs.ExewallFileid, iter
	return nil
}

// attachOwnIter attaches prog, a task_file iterator, to the files of this
// process only (kernels from 6.1 take a pid, bpf_iter_link_info.task): a
// pass then walks the daemon's own files, not every file of every process,
// and a policy's first apply makes a pass per few hundred executables.
// cilium/ebpf's AttachIter takes no pid. The program keeps its own check
// of the reader, so a kernel that ignores the pid is no worse off.
func attachOwnIter(prog *ebpf.Program) (*link.Iter, error) {
	info := &struct{ tid, pid, pidFD uint32 }{pid: uint32(os.Getpid())} // (on the heap: it does not move)
	attr := struct {
		progFD, targetFD, attachType, flags uint32
		iterInfo                            uint64
		iterInfoLen, _                      uint32
	}{progFD: uint32(prog.FD()), attachType: uint32(ebpf.AttachTraceIter),
		iterInfo: uint64(uintptr(unsafe.Pointer(info))), iterInfoLen: uint32(unsafe.Sizeof(*info))}
	const bpfLinkCreate = 28
	fd, _, errno := unix.Syscall(unix.SYS_BPF, bpfLinkCreate, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(info)
	if errno != 0 {
		return nil, fmt.Errorf("link the identity iterator to this process: %w", errno)
	}
	l, err := link.NewFromFD(int(fd))
	if err != nil {
		unix.Close(int(fd))
		return nil, err
	}
	it, ok := l.(*link.Iter)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("identity iterator link is a %T", l)
	}
	return it, nil
}

// Close releases the iterator; later lookups use stat().
func (r *resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.iter != nil {
		r.iter.Close()
		r.prog.Close()
		r.iter, r.prog = nil, nil
	}
	return nil
}

// Identify implements engine.Resolver: the kernel's identity of the
// executable at path, as the datapath matches it; ok is false when there is
// no file there (yet).
func (b *Backend) Identify(path string) (engine.FileID, bool, error) {
	return b.identify(path, true)
}

// Pass is Identify for a run of lookups (engine.PassResolver): the events
// are read once, here, not at every path.
func (b *Backend) Pass() engine.Resolver {
	if w := b.exes; w != nil {
		w.mu.Lock()
		w.drain()
		w.mu.Unlock()
	}
	return passResolver{b}
}

type passResolver struct{ b *Backend }

func (p passResolver) IdentifyAll(paths []string) (map[string]engine.FileID, error) {
	return p.b.IdentifyAll(paths)
}

func (p passResolver) Identify(path string) (engine.FileID, bool, error) {
	return p.b.identify(path, false)
}

func (b *Backend) identify(path string, drain bool) (engine.FileID, bool, error) {
	if w := b.exes; w != nil {
		w.mu.Lock()
		// One read of the events (usually none): a file replaced a moment
		// ago is not answered from memory.
		if drain {
			w.drain()
		}
		e := w.lookup(path)
		w.mu.Unlock()
		if e != nil && e.hasID {
			return e.id, true, nil
		}
	}
	ids, err := b.resolver.identifyAll([]string{path})
	if err != nil {
		return engine.FileID{}, false, err
	}
	id, ok := ids[path]
	return id, ok, nil
}

// batch bounds how many files are open at once while resolving.
const batch = 512

// identifyAll resolves many paths with one iterator pass per batch. Paths
// that do not exist are absent from the result.
//
// Answers are cached by what stat() says of the path (device, inode, ctime):
// a file replaced, moved or recreated changes that, and is asked of the
// kernel again. Re-validating a large policy then costs one stat() per
// executable instead of an iterator pass.
func (r *resolver) identifyAll(paths []string) (map[string]engine.FileID, error) {
	return r.identifyKeyed(paths, statKeys(paths))
}

// identifyKeyed is identifyAll with the paths' stat keys taken already
// (statKeys; a path without one is resolved and not cached).
func (r *resolver) identifyKeyed(paths []string, keys map[string]statKey) (map[string]engine.FileID, error) {
	out, todo, fresh, err := r.identifyUncached(paths, keys)
	if err != nil {
		return nil, err
	}
	r.remember(todo, keys, fresh)
	return out, nil
}

// remember caches the answers identifyUncached computed for todo (and
// forgets those of paths among todo that got none).
func (r *resolver) remember(todo []string, keys map[string]statKey, fresh map[string]engine.FileID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cache.store(todo, keys, fresh, nil)
}

// identifyUncached is identifyKeyed without caching what it computes: out
// holds every answer, fresh those computed for todo (the paths the cache
// had no valid answer for), for remember.
func (r *resolver) identifyUncached(paths []string, keys map[string]statKey) (out map[string]engine.FileID, todo []string, fresh map[string]engine.FileID, err error) {
	out = make(map[string]engine.FileID, len(paths))
	r.mu.Lock()
	if r.cache == nil {
		r.cache = statCache[engine.FileID]{}
	}
	todo = r.cache.lookupKeyed(paths, keys, out)
	r.mu.Unlock()
	// Batches on two CPUs: each holds its files open until its pass has
	// read them, so the fds a pass reports are its own.
	answers := make([]map[string]engine.FileID, (len(todo)+batch-1)/batch)
	errs := make([]error, len(answers))
	inParallel(len(todo), batch, func(lo, hi int) {
		m := make(map[string]engine.FileID, hi-lo)
		answers[lo/batch], errs[lo/batch] = m, r.identifyBatch(todo[lo:hi], m)
	})
	fresh = make(map[string]engine.FileID, len(todo))
	for i, m := range answers {
		if errs[i] != nil {
			return nil, nil, nil, errs[i]
		}
		maps.Copy(fresh, m)
	}
	maps.Copy(out, fresh)
	return out, todo, fresh, nil
}

// forget drops the cached answers for paths.
func (r *resolver) forget(paths []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range paths {
		delete(r.cache, p)
	}
}

// statKey is what stat() says of a path that changes when the file is
// replaced, moved or recreated.
type statKey struct {
	dev, ino uint64
	ctime    unix.Timespec
}

// statCache keeps what was computed for a path while its statKey holds.
type statCache[V any] map[string]struct {
	key statKey
	val V
}

// statKeys stats every path once; a path stat() fails on has no key.
func statKeys(paths []string) map[string]statKey {
	keys := make(map[string]statKey, len(paths))
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil {
			keys[p] = keyOf(&st)
		}
	}
	return keys
}

func keyOf(st *unix.Stat_t) statKey { return statKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim} }

// lookupKeyed puts the still-valid answers for paths in out (keys: their
// stat keys) and returns the paths to compute again (a path stat() fails
// on has no key: whatever computes it decides, and it is not cached).
func (c statCache[V]) lookupKeyed(paths []string, keys map[string]statKey, out map[string]V) []string {
	var todo []string
	for _, p := range paths {
		key, ok := keys[p]
		if e, hit := c[p]; ok && hit && e.key == key {
			out[p] = e.val
			continue
		}
		todo = append(todo, p)
	}
	return todo
}

// store records the fresh answers for todo in the cache and in out (when
// not nil), and forgets the paths that got none.
func (c statCache[V]) store(todo []string, keys map[string]statKey, fresh, out map[string]V) {
	for _, p := range todo {
		v, ok := fresh[p]
		if ok && out != nil {
			out[p] = v
		}
		key, hasKey := keys[p]
		c.storeOne(p, key, hasKey, v, ok)
	}
}

// storeOne is store of one path: its answer v (when has), its stat key
// (when hasKey).
func (c statCache[V]) storeOne(p string, key statKey, hasKey bool, v V, has bool) {
	if !has {
		delete(c, p)
		return
	}
	if hasKey {
		c[p] = struct {
			key statKey
			val V
		}{key, v}
	}
}

func (r *resolver) identifyBatch(paths []string, out map[string]engine.FileID) error {
	fds := make(map[uint32]int, len(paths))
	defer closeAll(fds)
	for i, p := range paths {
		// O_PATH: no read permission or side effects needed; f_inode is the
		// same inode exec would map (the overlay inode on overlayfs).
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			return fmt.Errorf("open %s: %w", p, err)
		}
		fds[uint32(fd)] = i
	}
	return r.identifyOpen(fds, paths, func(i int, id engine.FileID) { out[paths[i]] = id })
}

func closeAll(fds map[uint32]int) {
	for fd := range fds {
		unix.Close(int(fd))
	}
}

// pathAnswer is what a resolution found of one path, kept by the path's
// place in the list resolved: a policy's first resolution made a map by
// path for each kind of answer (stat keys, symlinks, identities, places,
// which were computed) and merged them, ~10 maps of 100,000 strings, the
// part of a fresh apply that grew faster than the policy.
type pathAnswer struct {
	key                  statKey
	id                   engine.FileID
	pl                   place
	hasKey, hasID, hasPl bool
	link                 bool // a symlink (lstat's answer)
	computed             bool // the identity is the file system's, not the resolver cache's
	stale                bool // the place was resolved, not the places cache's
}

// identifyFirst is lstatKeys and identifyUncached for paths the cache
// knows nothing of (the resolver's first resolution: a fresh backend, the
// daemon's start), answering in ans (by position, len(paths)): each path
// is opened once, without following a final symlink, and that open's
// fstat is its lstat, where lstat and then an open walked every path twice
// (~20 ms of a fresh apply of 10,000 rules here). A symlink is stat'ed and
// opened through, as before.
func (r *resolver) identifyFirst(paths []string, ans []pathAnswer) error {
	errs := make([]error, (len(paths)+batch-1)/batch)
	inParallel(len(paths), batch, func(lo, hi int) {
		errs[lo/batch] = r.identifyFirstBatch(paths, ans, lo, hi)
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *resolver) identifyFirstBatch(paths []string, ans []pathAnswer, lo, hi int) error {
	fds := make(map[uint32]int, hi-lo)
	defer closeAll(fds)
	for i := lo; i < hi; i++ {
		p, a := paths[i], &ans[i]
		a.computed = true
		fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			return fmt.Errorf("open %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			a.key, a.hasKey = keyOf(&st), true
			fds[uint32(fd)] = i
			continue
		}
		unix.Close(fd)
		a.link = true
		if unix.Stat(p, &st) == nil {
			a.key, a.hasKey = keyOf(&st), true
		}
		if fd, err = unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
			fds[uint32(fd)] = i
		} else if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("open %s: %w", p, err)
		}
	}
	return r.identifyOpen(fds, paths, func(i int, id engine.FileID) { ans[i].id, ans[i].hasID = id, true })
}

// rememberAnswers caches the identities computed for todo (ans by
// position), but for the positions skip marks, as remember does.
func (r *resolver) rememberAnswers(todo []string, ans []pathAnswer, skip []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range todo {
		if a := &ans[i]; a.computed && !skip[i] {
			r.cache.storeOne(p, a.key, a.hasKey, a.id, a.hasID)
		}
	}
}

// split divides paths into those the resolver has an answer cached for
// (valid or not: their stat keys tell) and the others, by position; when
// it knows none, both are nil (every path is unknown).
func (r *resolver) split(paths []string) (known, unknown []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) == 0 {
		return nil, nil
	}
	for i, p := range paths {
		if _, ok := r.cache[p]; ok {
			known = append(known, i)
		} else {
			unknown = append(unknown, i)
		}
	}
	return known, unknown
}

// identifyOpen calls set with the identity of each file open as an fd in
// fds (fd -> position in paths, which name them for errors).
func (r *resolver) identifyOpen(fds map[uint32]int, paths []string, set func(i int, id engine.FileID)) error {
	if len(fds) == 0 {
		return nil
	}
	r.mu.Lock()
	iter := r.iter
	if iter == nil {
		r.mu.Unlock()
		for fd, i := range fds {
			id, err := statID(int(fd), paths[i])
			if err != nil {
				return fmt.Errorf("stat %s: %w", paths[i], err)
			}
			set(i, id)
		}
		return nil
	}
	rd, err := iter.Open()
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("run identity iterator: %w", err)
	}
	data, err := io.ReadAll(rd)
	rd.Close()
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("read identity iterator: %w", err)
	}
	reported := 0
	for off := 0; off+fdIDSize <= len(data); off += fdIDSize {
		fd, id := decodeFdID(data[off : off+fdIDSize])
		if i, ok := fds[fd]; ok {
			set(i, id)
			reported++ // (a pass lists each open fd once)
		}
	}
	if reported == len(fds) {
		return nil
	}
	seen := map[uint32]bool{}
	for off := 0; off+fdIDSize <= len(data); off += fdIDSize {
		fd, _ := decodeFdID(data[off : off+fdIDSize])
		seen[fd] = true
	}
	for fd, i := range fds {
		if !seen[fd] {
			return fmt.Errorf("identity iterator did not report %s", paths[i])
		}
	}
	return nil
}

// fdIDSize is the size of the iterator's record, struct fd_id of
// bpf/fileid.c: fd, padding, then struct file_id (dev, igen, ino).
const fdIDSize = 24

// decodeFdID reads one iterator record (fileidFdId) without reflection:
// a pass lists every file the daemon has open.
func decodeFdID(b []byte) (fd uint32, id engine.FileID) {
	ne := binary.NativeEndian
	return ne.Uint32(b[0:]), engine.FileID{Dev: ne.Uint32(b[8:]), Gen: ne.Uint32(b[12:]), Ino: ne.Uint64(b[16:])}
}

// statID is the fallback: stat's st_dev re-encoded the kernel's way, and
// the inode generation where the filesystem tells it (FS_IOC_GETVERSION:
// ext4, btrfs, xfs); on others (tmpfs) it stays 0 and differs from the
// kernel's, so exe rules there do not match without the iterator.
func statID(fd int, path string) (engine.FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return engine.FileID{}, err
	}
	dev := unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)
	id := engine.FileID{Dev: dev, Ino: st.Ino}
	if f, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0); err == nil {
		var st2 unix.Stat_t
		if unix.Fstat(f, &st2) == nil && st2.Dev == st.Dev && st2.Ino == st.Ino {
			if gen, err := unix.IoctlGetUint32(f, fsIocGetversion); err == nil {
				id.Gen = gen
			}
		}
		unix.Close(f)
	}
	return id, nil
}

// fsIocGetversion is FS_IOC_GETVERSION, _IOR('v', 1, long).
const fsIocGetversion = 2<<30 | uint(unsafe.Sizeof(uintptr(0)))<<16 | 'v'<<8 | 1
