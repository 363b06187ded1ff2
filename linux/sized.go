//go:build linux

package linux

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Maps sized to the policy. A hash map allocates its bucket array (16
// bytes per possible entry) when it is created, whether or not it holds
// anything: the rule selectors, destination nodes and counter names sized
// for the largest policy (2 * maxRules entries each) cost about 30 MiB of
// kernel memory on a daemon with no rules. They are created small instead
// and grow when a policy needs more.
//
// How they grow. Each of them is an array of one map (bpf/maps.h,
// SIZED_HASH) whose slot 0 holds the hash in force; a program finds the
// hash with one inlined array lookup and looks it up as before. Growing
// creates a larger hash, copies every entry into it and swaps slot 0: one
// pointer write, so a program sees either the old hash or the new one, both
// holding the same entries, and generations, applies and counters are
// untouched. Only userspace writes these maps, always with b.mu held, so
// nothing is written to the old hash after the copy started. The other
// design considered, loading a second datapath with larger maps and
// switching the links to it, costs a full verification (hundreds of ms) at
// every growth, has to move every object that shares the maps (exec
// tracing, iterators, guard, DNS, inbound) in step, and loses counts made
// by the old programs between the copy and the switch; its datapath would
// save only the array lookup, which costs nothing measurable next to the
// hash lookup behind it (bench connect, in the commit that made this).
//
// The counters, a per-CPU array looked up on every verdict, grow another
// way: in chunks that are added, never copied (counters.go).

// sizedNames are the datapath maps created this way.
var sizedNames = []string{"exe_rules", "cgroup_rules", "uid_rules", "gid_rules", "path_rules", "name_rules", "dests", "counter_names", "name_binds"}

const (
	// sizedFloor is the smallest capacity: 16 KiB of buckets, room for a
	// few hundred rules in both generations without growing.
	sizedFloor = 1 << 10
	// sizedCeiling is the largest: what the maps were before (2 *
	// maxRules rule entries, MAX_DEST_NODES destination nodes).
	sizedCeiling = 1 << 18
)

// sizedCapacity is the capacity for need entries: the next power of two
// at least twice need (room for the next policy's generation beside this
// one's without growing again), within the floor and the ceiling.
func sizedCapacity(need uint64) uint32 {
	c := uint64(sizedFloor)
	for c < 2*need && c < sizedCeiling {
		c <<= 1
	}
	return uint32(c)
}

// sizedMap is one of the maps sized to the policy: the outer array
// (pinned, shared by every object) and the hash in its slot 0.
type sizedMap struct {
	name  string
	outer *ebpf.Map
	inner *ebpf.Map
	spec  *ebpf.MapSpec // the inner hash's; MaxEntries set at each growth
	grew  func(name string, from, to uint32)
	// full counts the growths a write that found the hash full asked
	// for (makeRoom's are not counted: it grows before writing).
	full int
}

// sizedMaps are the datapath's sized maps by their bpf2go field names.
type sizedMaps struct {
	ExeRules, CgroupRules, UidRules, GidRules, PathRules, NameRules, Dests, CounterNames, NameBinds *sizedMap
}

func (s *sizedMaps) byName() map[string]**sizedMap {
	return map[string]**sizedMap{"exe_rules": &s.ExeRules, "cgroup_rules": &s.CgroupRules, "uid_rules": &s.UidRules,
		"gid_rules": &s.GidRules, "path_rules": &s.PathRules, "name_rules": &s.NameRules, "dests": &s.Dests,
		"counter_names": &s.CounterNames, "name_binds": &s.NameBinds}
}

func (s *sizedMaps) close() {
	for _, m := range s.byName() {
		if *m != nil && (*m).inner != nil {
			(*m).inner.Close()
			(*m).inner = nil
		}
	}
}

// reset closes the hashes and forgets the maps (a load that failed).
func (s *sizedMaps) reset() {
	s.close()
	*s = sizedMaps{}
}

// openSized takes the hash in force in outer's slot 0, or puts a new one
// of capacity (at least the floor) there when the slot is empty (a map
// just created).
func openSized(name string, outer *ebpf.Map, spec *ebpf.MapSpec, capacity uint32) (*sizedMap, error) {
	if spec == nil || outer.Type() != ebpf.ArrayOfMaps {
		return nil, fmt.Errorf("map %s is not sized to the policy", name)
	}
	is := spec.Copy()
	is.Name, is.Pinning, is.Contents = name, ebpf.PinNone, nil
	s := &sizedMap{name: name, outer: outer, spec: is}
	inner, err := innerMap(outer)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", name, err)
	}
	if inner != nil {
		s.inner = inner
		return s, nil
	}
	if err := s.resize(max(capacity, sizedFloor)); err != nil {
		return nil, err
	}
	return s, nil
}

// innerMap opens the map in slot 0 of outer; nil when the slot is empty.
func innerMap(outer *ebpf.Map) (*ebpf.Map, error) { return innerMapAt(outer, 0) }

// innerMapAt opens the map in slot i of outer; nil when the slot is empty.
func innerMapAt(outer *ebpf.Map, i uint32) (*ebpf.Map, error) {
	var id uint32
	if err := outer.Lookup(i, &id); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return ebpf.NewMapFromID(ebpf.MapID(id))
}

// innerCompatible says whether the hash in force in pinned outer map m has
// the layout spec's template asks for (the outer array's own layout never
// changes with it, so MapSpec.Compatible cannot tell).
func innerCompatible(spec *ebpf.MapSpec, m *ebpf.Map) error {
	if spec.InnerMap == nil || m.Type() != ebpf.ArrayOfMaps {
		return nil
	}
	inner, err := innerMap(m)
	if err != nil || inner == nil {
		return err
	}
	defer inner.Close()
	want := spec.InnerMap
	fixed := want.Type == ebpf.Array || want.Type == ebpf.PerCPUArray // counters' chunks: one size
	if inner.Type() != want.Type || inner.KeySize() != want.KeySize || inner.ValueSize() != want.ValueSize || inner.Flags() != want.Flags ||
		fixed && inner.MaxEntries() != want.MaxEntries {
		return fmt.Errorf("inner map %s: %s key %d value %d flags %#x, want %s key %d value %d flags %#x: %w",
			spec.Name, inner.Type(), inner.KeySize(), inner.ValueSize(), inner.Flags(),
			want.Type, want.KeySize, want.ValueSize, want.Flags, ebpf.ErrMapIncompatible)
	}
	return nil
}

// reinstate puts the daemon's hash back in outer's slot 0 when the slot
// holds another map or none (emptied behind the daemon's back: the
// programs would then read an empty map). It says whether it had to.
func (s *sizedMap) reinstate() (bool, error) {
	if in, err := holds(s.outer, 0, s.inner); in || err != nil {
		return false, err
	}
	return true, s.outer.Update(uint32(0), s.inner, ebpf.UpdateAny)
}

// holds says whether slot key of the array of maps outer holds inner; true
// when the kernel does not say which map a slot holds (no guess).
func holds(outer *ebpf.Map, key uint32, inner *ebpf.Map) (bool, error) {
	info, err := inner.Info()
	if err != nil {
		return false, err
	}
	want, ok := info.ID()
	if !ok {
		return true, nil
	}
	var id uint32
	err = outer.Lookup(key, &id)
	if err == nil && ebpf.MapID(id) == want {
		return true, nil
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, err
	}
	return false, nil
}

// resize puts a copy of the hash in force, with room for capacity
// entries, in its place.
func (s *sizedMap) resize(capacity uint32) error {
	spec := s.spec.Copy()
	spec.MaxEntries = capacity
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return fmt.Errorf("create map %s of %d entries: %w", s.name, capacity, err)
	}
	if s.inner != nil {
		if err := copyEntries(s.inner, m); err != nil {
			m.Close()
			return fmt.Errorf("grow map %s: %w", s.name, err)
		}
	}
	if err := s.outer.Update(uint32(0), m, ebpf.UpdateAny); err != nil {
		m.Close()
		return fmt.Errorf("put map %s in force: %w", s.name, err)
	}
	from := uint32(0)
	if s.inner != nil {
		from = s.inner.MaxEntries()
		s.inner.Close()
	}
	s.inner = m
	if s.grew != nil && from != 0 {
		s.grew(s.name, from, capacity)
	}
	return nil
}

// grow makes room for extra more entries in a hash that is full (an
// update failed with E2BIG); false when it is at the ceiling already.
func (s *sizedMap) grow(extra int) (bool, error) {
	have := s.inner.MaxEntries()
	c := sizedCapacity(uint64(have) + uint64(max(extra, 1)))
	if c <= have {
		return false, nil
	}
	s.full++
	return true, s.resize(c)
}

// ensure makes room for need entries in all.
func (s *sizedMap) ensure(need int) error {
	if uint64(need) > uint64(s.inner.MaxEntries()) {
		return s.resize(sizedCapacity(uint64(need)))
	}
	return nil
}

// makeRoom makes room for need[s] entries in each map s, before they are
// written: a map too small is replaced by an empty-enough one now instead
// of growing (a copy) when a write finds it full. Putting a hash in its
// outer array waits for an RCU grace period (the kernel's
// maybe_wait_bpf_programs), milliseconds each, so the maps are resized
// side by side and their grace periods overlap; a policy's first apply
// grows several of them.
func makeRoom(need map[*sizedMap]int) error {
	var todo []*sizedMap
	for s, n := range need {
		if uint64(n) > uint64(s.inner.MaxEntries()) {
			todo = append(todo, s)
		}
	}
	if len(todo) <= 1 {
		for _, s := range todo {
			return s.ensure(need[s])
		}
		return nil
	}
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, s := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.ensure(need[s])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyEntries copies every entry of hash from into hash to: in batches
// where the kernel can, else one by one.
func copyEntries(from, to *ebpf.Map) error {
	const chunk = 4096
	kt := reflect.ArrayOf(int(from.KeySize()), reflect.TypeFor[byte]())
	vt := reflect.ArrayOf(int(from.ValueSize()), reflect.TypeFor[byte]())
	keys := reflect.MakeSlice(reflect.SliceOf(kt), chunk, chunk)
	vals := reflect.MakeSlice(reflect.SliceOf(vt), chunk, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := from.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
		if n > 0 {
			if err := putAll(to, keys.Slice(0, n).Interface(), vals.Slice(0, n).Interface(), n); err != nil {
				return err
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			// No batches here: one by one (what was copied is written again).
			var k, v []byte
			it := from.Iterate()
			for it.Next(&k, &v) {
				if err := retryNoMem(func() error { return to.Update(k, v, ebpf.UpdateAny) }); err != nil {
					return err
				}
			}
			return it.Err()
		}
	}
}

// putAll writes n keys and values (slices) into m.
func putAll(m *ebpf.Map, keys, vals any, n int) error {
	kv, vv := reflect.ValueOf(keys), reflect.ValueOf(vals)
	for done, tries := 0, 0; done < n; {
		got, err := m.BatchUpdate(kv.Slice(done, n).Interface(), vv.Slice(done, n).Interface(), nil)
		done += got
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			for i := done; i < n; i++ {
				k, v := kv.Index(i).Interface(), vv.Index(i).Interface()
				if err := retryNoMem(func() error { return m.Update(k, v, ebpf.UpdateAny) }); err != nil {
					return err
				}
			}
			return nil
		case errors.Is(err, unix.ENOMEM) && tries < maxNoMemRetries:
			tries++
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return nil
}

// The methods below are *ebpf.Map's, on the hash in force; an update that
// finds it full grows it and goes on.

func (s *sizedMap) Lookup(key, valueOut any) error { return s.inner.Lookup(key, valueOut) }
func (s *sizedMap) Delete(key any) error           { return s.inner.Delete(key) }
func (s *sizedMap) Iterate() *ebpf.MapIterator     { return s.inner.Iterate() }
func (s *sizedMap) MaxEntries() uint32             { return s.inner.MaxEntries() }

func (s *sizedMap) BatchLookup(cursor *ebpf.MapBatchCursor, keysOut, valuesOut any, opts *ebpf.BatchOptions) (int, error) {
	return s.inner.BatchLookup(cursor, keysOut, valuesOut, opts)
}

func (s *sizedMap) BatchDelete(keys any, opts *ebpf.BatchOptions) (int, error) {
	return s.inner.BatchDelete(keys, opts)
}

func (s *sizedMap) Update(key, value any, flags ebpf.MapUpdateFlags) error {
	for {
		err := s.inner.Update(key, value, flags)
		if !errors.Is(err, unix.E2BIG) {
			return err
		}
		if grown, gerr := s.grow(1); gerr != nil {
			return gerr
		} else if !grown {
			return err
		}
	}
}

func (s *sizedMap) BatchUpdate(keys, values any, opts *ebpf.BatchOptions) (int, error) {
	kv, vv := reflect.ValueOf(keys), reflect.ValueOf(values)
	total := kv.Len()
	done := 0
	for {
		n, err := s.inner.BatchUpdate(kv.Slice(done, total).Interface(), vv.Slice(done, total).Interface(), opts)
		done += n
		if !errors.Is(err, unix.E2BIG) {
			return done, err
		}
		if grown, gerr := s.grow(total - done); gerr != nil {
			return done, gerr
		} else if !grown {
			return done, err
		}
	}
}

// kmap is what the map writers (writeDiff, scanMap, ...) use of a map:
// an *ebpf.Map or a *sizedMap.
type kmap interface {
	Lookup(key, valueOut any) error
	Update(key, value any, flags ebpf.MapUpdateFlags) error
	Delete(key any) error
	BatchUpdate(keys, values any, opts *ebpf.BatchOptions) (int, error)
	BatchDelete(keys any, opts *ebpf.BatchOptions) (int, error)
	BatchLookup(cursor *ebpf.MapBatchCursor, keysOut, valuesOut any, opts *ebpf.BatchOptions) (int, error)
	Iterate() *ebpf.MapIterator
}

var (
	_ kmap = (*ebpf.Map)(nil)
	_ kmap = (*sizedMap)(nil)
)

// openPolicyMaps fills b.sized and b.counters from the datapath's outer
// maps (outers, by their names in spec; spec for the inner templates).
//
// Putting a map into an empty outer slot (a fresh start) waits for an RCU
// grace period in the kernel (maybe_wait_bpf_programs: 5-15 ms each), CPU
// the start does not use: the ten outer maps are filled at once, their
// waits overlapping, and the datapath's loader calls this while its
// programs are being verified (loadObjectsThen).
func (b *Backend) openPolicyMaps(spec *ebpf.CollectionSpec, outers map[string]*ebpf.Map) error {
	grew := func(name string, from, to uint32) {
		b.log.Debug("policy map grown", "map", name, "from", from, "to", to)
	}
	fields := b.sized.byName()
	for name := range fields {
		if spec.Maps[name] == nil || outers[name] == nil {
			return fmt.Errorf("datapath lacks map %s", name)
		}
	}
	if spec.Maps["counters"] == nil || outers["counters"] == nil {
		return errors.New("datapath lacks map counters")
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for name, field := range fields {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := openSized(name, outers[name], spec.Maps[name].InnerMap, sizedFloor)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			s.grew = grew
			*field = s
		}()
	}
	var counters *counterChunks
	var cerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		counters, cerr = openCounterChunks(outers["counters"], spec.Maps["counters"].InnerMap, b.ncpu)
	}()
	wg.Wait()
	if err := errors.Join(append(errs, cerr)...); err != nil {
		b.sized.close()
		counters.close()
		return err
	}
	b.counters = counters
	return nil
}

// migrationTargets are the maps copyMaps fills from old pins: the sized
// maps' hashes in force, grown to hold what the old maps hold, for the
// others the datapath's maps.
func (b *Backend) migrationTargets(old map[string]*ebpf.Map) (map[string]*ebpf.Map, error) {
	out := b.mapsByName()
	delete(out, "counters") // chunks: copied by counterChunks.copyFrom
	for name, field := range b.sized.byName() {
		s := *field
		from := old[name]
		if from == nil {
			continue
		}
		if from.Type() == ebpf.ArrayOfMaps {
			inner, err := innerMap(from)
			if err != nil || inner == nil {
				delete(out, name)
				continue
			}
			old[name] = inner // closed with the others
			from.Close()
			from = inner
		}
		n, err := countEntries(from)
		if err != nil {
			return nil, fmt.Errorf("count map %s: %w", name, err)
		}
		if err := s.ensure(n); err != nil {
			return nil, err
		}
		out[name] = s.inner
	}
	return out, nil
}

// countEntries counts the keys of m.
func countEntries(m *ebpf.Map) (int, error) {
	cur, next := make([]byte, m.KeySize()), make([]byte, m.KeySize())
	n := 0
	err := m.NextKey(nil, next)
	for err == nil {
		n++
		cur, next = next, cur
		err = m.NextKey(cur, next)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, nil
	}
	return n, err
}
