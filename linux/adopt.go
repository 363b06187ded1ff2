//go:build linux

package linux

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
)

// Fast start. Loading a program costs the verifier's whole walk of it:
// seconds for the datapath's connect and sendmsg programs. Every program is
// therefore pinned beside the maps, under a name that carries a hash of its
// object file and of what New set in it (ring buffer size, identity
// storage). A restarted daemon of the same build adopts the pinned programs
// and the maps they were verified with instead of loading them again; a
// pin of another build, or a program bound to another map than the one
// pinned under that map's name, means a full load, which replaces the
// stale program pins.

// progPin is where program prog of object obj, built as key, is pinned.
func (b *Backend) progPin(obj, key, prog string) string {
	return filepath.Join(b.cfg.PinDir, "prog_"+obj+"_"+key+"_"+prog)
}

// buildKey names one build of an object: its ELF bytes and the settings
// the loader changes in it.
func buildKey(elf []byte, params ...any) string {
	h := sha256.New()
	h.Write(elf)
	fmt.Fprint(h, params...)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// loadObjects loads spec into obj (a bpf2go objects struct), or adopts the
// programs an earlier daemon of the same build pinned. Programs loaded
// afresh are pinned for the next daemon. Tests that edit specs (specHook)
// neither adopt nor pin.
func (b *Backend) loadObjects(name string, elf []byte, spec *ebpf.CollectionSpec, obj any, opts *ebpf.CollectionOptions, params ...any) error {
	return b.loadObjectsThen(name, elf, spec, obj, opts, nil, params...)
}

// loadObjectsThen is loadObjects that also calls then (when not nil) with
// the object's maps by their names in spec, once they exist: on a load
// afresh while the programs are verified (in another goroutine), else
// after the programs are adopted. When then fails, so does the load, and
// obj is left empty.
func (b *Backend) loadObjectsThen(name string, elf []byte, spec *ebpf.CollectionSpec, obj any, opts *ebpf.CollectionOptions, then func(map[string]*ebpf.Map) error, params ...any) error {
	after := func() error {
		if then == nil {
			return nil
		}
		if err := then(objectMaps(obj)); err != nil {
			closeObjects(obj)
			return err
		}
		return nil
	}
	if opts.Cache == nil {
		opts.Cache = b.btf
	}
	if m, ms := opts.MapReplacements[tgidIdents], spec.Maps[tgidIdents]; m != nil && ms != nil {
		ms.MaxEntries = m.MaxEntries() // sized by the datapath's load (sizeTgidIdents)
	}
	if m, ms := opts.MapReplacements["events"], spec.Maps["events"]; m != nil && ms != nil {
		ms.MaxEntries = m.MaxEntries() // Config.RingBufSize
	}
	if specHook != nil {
		if err := spec.LoadAndAssign(obj, opts); err != nil {
			return err
		}
		return after()
	}
	key := buildKey(elf, params...)
	// Objects load concurrently (loadOptional): the bookkeeping below is
	// shared (adoptObjects locks it too), the loading itself is not.
	err := b.adoptObjects(name, key, spec, obj, opts)
	if err == nil {
		b.loadMu.Lock()
		b.adopted = append(b.adopted, name)
		if b.progPins == nil {
			b.progPins = map[string]*ebpf.Program{}
		}
		for tag, p := range objectPrograms(obj) {
			b.progPins[b.progPin(name, key, tag)] = p
		}
		b.loadMu.Unlock()
		return after()
	}
	if !errors.Is(err, os.ErrNotExist) {
		b.log.Info("pinned programs not adopted; loading them", "object", name, "err", err)
	}
	if err := loadConcurrently(spec, obj, opts, then); err != nil {
		return err
	}
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	if err := b.pinPrograms(name, key, obj); err != nil {
		b.log.Warn("pin programs (the next start loads them again)", "object", name, "err", err)
	}
	return nil
}

// pinPrograms replaces the program pins of object name by obj's.
func (b *Backend) pinPrograms(name, key string, obj any) error {
	stale, _ := filepath.Glob(filepath.Join(b.cfg.PinDir, "prog_"+name+"_*"))
	for _, p := range stale {
		os.Remove(p)
	}
	var errs []error
	for tag, p := range objectPrograms(obj) {
		path := b.progPin(name, key, tag)
		if err := p.Pin(path); err != nil {
			errs = append(errs, err)
			continue
		}
		if b.progPins == nil {
			b.progPins = map[string]*ebpf.Program{}
		}
		b.progPins[path] = p
	}
	return errors.Join(errs...)
}

// adoptObjects fills obj with the pinned programs of build key and the maps
// they use; os.ErrNotExist when no such build is pinned.
func (b *Backend) adoptObjects(name, key string, spec *ebpf.CollectionSpec, obj any, opts *ebpf.CollectionOptions) (retErr error) {
	progs := map[string]*ebpf.Program{}
	maps := map[string]*ebpf.Map{}
	defer func() {
		if retErr != nil {
			for _, p := range progs {
				p.Close()
			}
			for _, m := range maps {
				m.Close()
			}
		}
	}()
	for pname, ps := range spec.Programs {
		p, err := ebpf.LoadPinnedProgram(b.progPin(name, key, pname), nil)
		if err != nil {
			return err
		}
		progs[pname] = p
		if p.Type() != ps.Type {
			return fmt.Errorf("pinned %s is a %s program, want %s", pname, p.Type(), ps.Type)
		}
	}
	// The maps the loader would use: replacements, then pins.
	given := map[string]*ebpf.Map{}
	for mname, ms := range spec.Maps {
		if m := opts.MapReplacements[mname]; m != nil {
			given[mname] = m
			continue
		}
		if ms.Pinning != ebpf.PinByName || opts.Maps.PinPath == "" {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(opts.Maps.PinPath, mname), nil)
		if err != nil {
			return fmt.Errorf("map %s: %w", mname, err)
		}
		maps[mname] = m
		if err := ms.Compatible(m); err != nil {
			return fmt.Errorf("map %s: %w", mname, err)
		}
		given[mname] = m
	}
	// Each program must use exactly those; the maps only a program holds
	// (not pinned, not shared) are taken from it.
	byKernelName := map[string]string{}
	for mname := range spec.Maps {
		byKernelName[kernelName(mname)] = mname
	}
	seen := map[ebpf.MapID]bool{}
	givenID := map[ebpf.MapID]string{}
	for mname, g := range given {
		if id, err := b.mapID(g); err == nil {
			givenID[id] = mname
		}
	}
	for pname, p := range progs {
		ids, err := progMapIDs(p)
		if err != nil {
			return fmt.Errorf("program %s: %w", pname, err)
		}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if gname, ok := givenID[id]; ok && (kernelName(gname) == b.nameOf(id) || b.nameOf(id) == "") {
				continue // the very map given for it
			}
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				return fmt.Errorf("program %s map %d: %w", pname, id, err)
			}
			_, kname, err := mapIDName(m)
			if err == nil {
				b.setName(id, kname)
			}
			mname, ok := "", false
			if err == nil {
				mname, ok = byKernelName[kname]
			}
			if err != nil || !ok || strings.Contains(kname, ".") {
				m.Close() // .rodata, .bss: the program's own
				continue
			}
			if g := given[mname]; g != nil {
				gid, err := b.mapID(g)
				m.Close()
				if err != nil || gid != id {
					return fmt.Errorf("program %s uses another %s map than the one in force", pname, mname)
				}
				continue
			}
			if err := spec.Maps[mname].Compatible(m); err != nil {
				m.Close()
				return fmt.Errorf("map %s: %w", mname, err)
			}
			maps[mname] = m
		}
	}
	for mname, m := range given {
		if maps[mname] == nil {
			c, err := m.Clone()
			if err != nil {
				return err
			}
			maps[mname] = c
		}
	}
	return assignObjects(obj, progs, maps)
}

// mapID is m's kernel id, asked once per map during New.
func (b *Backend) mapID(m *ebpf.Map) (ebpf.MapID, error) {
	b.loadMu.Lock()
	id, ok := b.mapIDs[m]
	b.loadMu.Unlock()
	if ok {
		return id, nil
	}
	id, name, err := mapIDName(m)
	if err != nil {
		return 0, err
	}
	if id == 0 {
		return 0, errors.New("map id unavailable")
	}
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	if b.mapIDs == nil {
		b.mapIDs = map[*ebpf.Map]ebpf.MapID{}
	}
	b.mapIDs[m] = id
	if b.idName == nil {
		b.idName = map[ebpf.MapID]string{}
	}
	b.idName[id] = name
	return id, nil
}

// nameOf is the kernel name of map id as New last learnt it ("": unknown).
func (b *Backend) nameOf(id ebpf.MapID) string {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	return b.idName[id]
}

func (b *Backend) setName(id ebpf.MapID, name string) {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	if b.idName == nil {
		b.idName = map[ebpf.MapID]string{}
	}
	b.idName[id] = name
}

// kernelName is a map's name as the kernel keeps it (15 bytes).
func kernelName(name string) string {
	if len(name) > 15 {
		return name[:15]
	}
	return name
}

// assignObjects sets the program and map fields of obj by their ebpf tags;
// every one must be found. What is not assigned is closed.
func assignObjects(obj any, progs map[string]*ebpf.Program, maps map[string]*ebpf.Map) error {
	var missing []string
	used := map[any]bool{}
	walkObjects(obj, func(tag string, f reflect.Value) {
		switch f.Type() {
		case reflect.TypeOf((*ebpf.Program)(nil)):
			if p := progs[tag]; p != nil {
				f.Set(reflect.ValueOf(p))
				used[p] = true
				return
			}
		case reflect.TypeOf((*ebpf.Map)(nil)):
			if m := maps[tag]; m != nil {
				f.Set(reflect.ValueOf(m))
				used[m] = true
				return
			}
		default:
			return // variables: only read at load
		}
		missing = append(missing, tag)
	})
	if len(missing) > 0 {
		walkObjects(obj, func(_ string, f reflect.Value) { f.Set(reflect.Zero(f.Type())) })
		return fmt.Errorf("pinned build lacks %s", strings.Join(missing, ", "))
	}
	for _, p := range progs {
		if !used[p] {
			p.Close()
		}
	}
	for _, m := range maps {
		if !used[m] {
			m.Close()
		}
	}
	return nil
}

// objectMaps lists the maps of obj by their ebpf tags.
func objectMaps(obj any) map[string]*ebpf.Map { return objectsOf[*ebpf.Map](obj) }

// objectPrograms lists the programs of obj by their ebpf tags.
func objectPrograms(obj any) map[string]*ebpf.Program { return objectsOf[*ebpf.Program](obj) }

// objectsOf lists the fields of obj of type T, not nil, by their ebpf tags.
func objectsOf[T *ebpf.Map | *ebpf.Program](obj any) map[string]T {
	out := map[string]T{}
	walkObjects(obj, func(tag string, f reflect.Value) {
		if v, ok := f.Interface().(T); ok && !f.IsNil() {
			out[tag] = v
		}
	})
	return out
}

// closeObjects closes the programs and maps of obj and clears them.
func closeObjects(obj any) {
	walkObjects(obj, func(_ string, f reflect.Value) {
		switch v := f.Interface().(type) {
		case *ebpf.Program:
			if v != nil {
				v.Close()
			}
		case *ebpf.Map:
			if v != nil {
				v.Close()
			}
		default:
			return
		}
		f.Set(reflect.Zero(f.Type()))
	})
}

// walkObjects calls fn for every tagged field of a bpf2go objects struct
// (programs, maps, variables, in embedded structs).
func walkObjects(obj any, fn func(tag string, f reflect.Value)) {
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			if sf.Anonymous && f.Kind() == reflect.Struct {
				walk(f)
				continue
			}
			if tag := sf.Tag.Get("ebpf"); tag != "" {
				fn(tag, f)
			}
		}
	}
	walk(reflect.ValueOf(obj).Elem())
}

// syncProgPins pins again the programs whose pins were removed.
func (b *Backend) syncProgPins(report func(bool, string, ...any)) {
	for path, p := range b.progPins {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			os.MkdirAll(b.cfg.PinDir, 0o700)
			err := repin(p, path)
			report(err == nil, "program pin %s was removed", path)
		}
	}
}
