//go:build linux

package linux

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Upgrades. A daemon whose maps have another layout than the pinned ones
// (a field appended, a limit raised) loads a fresh set of maps, copies every
// entry of the pinned maps into them, and swaps programs and pins at its
// first Apply: the old programs keep judging with the old maps until their
// links are updated, so enforcement has no gap, and nothing the kernel
// accumulated (counters, socket owners, learned executables) is lost.
//
// An entry is carried over by its common prefix: a layout may append
// fields, which start zeroed, and may drop trailing ones. Keys and values of
// every map kind are copied the same way; socket and task storage, which
// userspace cannot list, are copied by the iterators in bpf/migrate.c.

// identityMaps are the maps the identity hooks (bpf/exec.c) write. A
// process's record there is inherited at fork and replaced at exec; a copy
// taken while the old hooks run alone could give a process that execs
// before ours attach the record of its parent for good. So in an upgrade
// our hooks attach beside the older daemon's (both sets keep both maps),
// then these maps are copied without overwriting what ours recorded
// (carryIdentities), and the older hooks are closed only when the cgroup
// hooks have switched to our maps (endOldIdentity).
var identityMaps = []string{"task_states", tgidIdents}

// carryIdentities copies the older daemon's identity maps into ours,
// keeping every record our hooks made since they attached.
func (b *Backend) carryIdentities() {
	if len(b.oldIdentMaps) == 0 {
		return
	}
	ours := b.mapsByName()
	for name, from := range b.oldIdentMaps {
		if to := ours[name]; to != nil {
			if _, err := copyMap(from, to, true); err != nil {
				b.log.Warn("pinned map not fully migrated", "err", fmt.Errorf("migrate map %s: %w", name, err))
			}
		}
		from.Close()
	}
	b.oldIdentMaps = nil
}

// endOldIdentity closes the older daemon's identity hooks kept beside ours
// during an upgrade, first putting them back on their pins when restore
// (our hooks leave the pins: the older cgroup programs still judge).
func (b *Backend) endOldIdentity(restore bool) {
	for name, old := range b.oldIdentLinks {
		if restore {
			ours := b.identLinks[name]
			if name == "exec" {
				ours = b.execLink
			}
			if ours != nil {
				ours.Unpin()
			}
			if err := old.Pin(b.identPin(name)); err != nil {
				b.log.Warn("put back the older identity hook", "hook", name, "err", err)
			}
		}
		old.Close()
	}
	b.oldIdentLinks = nil
	for _, m := range b.oldIdentMaps {
		m.Close()
	}
	b.oldIdentMaps = nil
}

// pinnedIncompatible opens the pinned maps of spec and reports whether any
// of them has another layout. The caller closes the maps.
func pinnedIncompatible(spec *ebpf.CollectionSpec, pinDir string) (map[string]*ebpf.Map, bool) {
	old := map[string]*ebpf.Map{}
	changed := false
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
		if err != nil {
			continue // not pinned yet: created fresh either way
		}
		old[name] = m
		if err := ms.Compatible(m); err != nil {
			changed = true
		} else if err := innerCompatible(ms, m); err != nil {
			changed = true
		}
	}
	return old, changed
}

// copyMaps copies the entries of every old map into the map of the same
// name in maps; a map that cannot be copied is reported, not fatal.
func copyMaps(old, maps map[string]*ebpf.Map) (copied map[string]int, errs []error) {
	copied = map[string]int{}
	for name, from := range old {
		to := maps[name]
		if to == nil {
			continue // gone from the new layout
		}
		n, err := copyMap(from, to, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("migrate map %s: %w", name, err))
		}
		copied[name] = n
	}
	return copied, errs
}

// copyMap copies every entry of from into to, resizing keys and values to
// to's layout, and returns how many it copied. With keep, an entry to
// already holds stays as it is. (Socket and task storage always keep:
// what a hook of ours recorded is newer than the copy.)
func copyMap(from, to *ebpf.Map, keep bool) (int, error) {
	switch from.Type() {
	case ebpf.RingBuf, ebpf.CGroupArray:
		return 0, nil // nothing to carry: events in flight, set at every start
	case ebpf.SkStorage, ebpf.TaskStorage:
		return copyStorage(from, to)
	}
	if from.Type() != to.Type() && !(isHash(from.Type()) && isHash(to.Type())) {
		return 0, fmt.Errorf("map type changed from %s to %s", from.Type(), to.Type())
	}
	perCPU := from.Type() == ebpf.PerCPUArray || from.Type() == ebpf.PerCPUHash || from.Type() == ebpf.LRUCPUHash
	// A new array starts zeroed: its zero entries (most of a counter
	// array) need no write.
	isArray := from.Type() == ebpf.Array || from.Type() == ebpf.PerCPUArray
	if isArray {
		if n, err := copyArray(from, to, perCPU); !errors.Is(err, ebpf.ErrNotSupported) {
			return n, err
		}
	}
	ks, vs := int(to.KeySize()), int(to.ValueSize())
	var k []byte
	var v []byte
	var pv [][]byte
	n := 0
	var errs []error
	it := from.Iterate()
	for {
		var ok bool
		if perCPU {
			ok = it.Next(&k, &pv)
		} else {
			ok = it.Next(&k, &v)
		}
		if !ok {
			break
		}
		var val any = resize(v, vs)
		zero := allZero(v)
		if perCPU {
			cpus := make([][]byte, len(pv))
			zero = true
			for i := range pv {
				cpus[i] = resize(pv[i], vs)
				zero = zero && allZero(pv[i])
			}
			val = cpus
		}
		if isArray && zero {
			continue
		}
		flags := ebpf.UpdateAny
		if keep {
			flags = ebpf.UpdateNoExist
		}
		if err := to.Update(resize(k, ks), val, flags); err != nil {
			if keep && errors.Is(err, ebpf.ErrKeyExist) {
				continue
			}
			if len(errs) < 3 {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	if err := it.Err(); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// copyArray copies the non-zero entries of an array in batches: a counter
// array has a slot for every possible rule, nearly all of them zero.
func copyArray(from, to *ebpf.Map, perCPU bool) (int, error) {
	const chunk = 4096
	per := 1
	if perCPU {
		ncpu, err := ebpf.PossibleCPU()
		if err != nil {
			return 0, err
		}
		per = ncpu
	}
	elem := reflect.ArrayOf(int(from.ValueSize()), reflect.TypeFor[byte]())
	keys := make([]uint32, chunk)
	vals := reflect.MakeSlice(reflect.SliceOf(elem), chunk*per, chunk*per)
	n := 0
	var cursor ebpf.MapBatchCursor
	for {
		got, err := from.BatchLookup(&cursor, keys, vals.Interface(), nil)
		for i := range got {
			cpus := make([][]byte, per)
			zero := true
			for c := range per {
				b := vals.Index(i*per+c).Slice(0, elem.Len()).Bytes()
				cpus[c] = resize(b, int(to.ValueSize()))
				zero = zero && allZero(b)
			}
			if zero || keys[i] >= to.MaxEntries() {
				continue
			}
			var val any = cpus
			if !perCPU {
				val = cpus[0]
			}
			if err := to.Update(keys[i], val, ebpf.UpdateAny); err != nil {
				return n, err
			}
			n++
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func isHash(t ebpf.MapType) bool { return t == ebpf.Hash || t == ebpf.LRUHash }

// resize keeps the common prefix of b in a buffer of n bytes.
func resize(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// copyStorage runs migrate.c's iterators to copy socket or task storage
// from one map to another.
func copyStorage(from, to *ebpf.Map) (int, error) {
	progs := []string{"exewall_migrate_tcp", "exewall_migrate_udp"}
	old, fresh := "old_sk", "new_sk"
	if from.Type() == ebpf.TaskStorage {
		progs, old, fresh = []string{"exewall_migrate_task"}, "old_task", "new_task"
	}
	for _, prog := range progs {
		spec, err := loadMigrate()
		if err != nil {
			return 0, err
		}
		if err := spec.Variables["copy_size"].Set(min(from.ValueSize(), to.ValueSize())); err != nil {
			return 0, err
		}
		if off, ok := spinLockOffset(to); ok {
			if err := spec.Variables["lock_off"].Set(off); err != nil {
				return 0, err
			}
		}
		repl := map[string]*ebpf.Map{old: from, fresh: to}
		for name, m := range repl {
			spec.Maps[name].ValueSize, spec.Maps[name].Value = m.ValueSize(), nil
		}
		p, err := loadProgram(spec, prog, &ebpf.CollectionOptions{MapReplacements: repl})
		if err != nil {
			return 0, notSupported("load the storage copier", err)
		}
		err = runIter(p, "the storage copier")
		p.Close()
		if err != nil {
			return 0, err
		}
	}
	return -1, nil // storage maps cannot be counted from userspace
}

// spinLocks are where the values of the storage maps that hold a
// bpf_spin_lock keep it: no helper may write over it (the verifier refused
// the copier for in_socks until it copied around it).
var spinLocks = map[string]uint32{"in_socks": uint32(unsafe.Offsetof(datapathInSock{}.Lock))}

// spinLockOffset is where m's values keep their bpf_spin_lock, if they do.
func spinLockOffset(m *ebpf.Map) (uint32, bool) {
	info, err := m.Info()
	if err != nil {
		return 0, false
	}
	off, ok := spinLocks[info.Name]
	return off, ok
}

// runIter runs iterator program p (named what, for errors) to its end.
func runIter(p *ebpf.Program, what string) error {
	it, err := link.AttachIter(link.IterOptions{Program: p})
	if err != nil {
		return notSupported("attach "+what, err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return err
	}
	defer rd.Close()
	_, err = io.Copy(io.Discard, rd)
	return err
}

// loadProgram loads one program of spec and the maps it uses, nothing else.
func loadProgram(spec *ebpf.CollectionSpec, name string, opts *ebpf.CollectionOptions) (*ebpf.Program, error) {
	ps := spec.Programs[name]
	if ps == nil {
		return nil, fmt.Errorf("no program %s", name)
	}
	for other := range spec.Programs {
		if other != name {
			delete(spec.Programs, other)
		}
	}
	for mname := range spec.Maps {
		if _, ok := opts.MapReplacements[mname]; !ok && !usesMap(ps, mname) {
			delete(spec.Maps, mname)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, *opts)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

func usesMap(ps *ebpf.ProgramSpec, name string) bool {
	for _, ins := range ps.Instructions {
		if ins.Reference() == name {
			return true
		}
	}
	return false
}
