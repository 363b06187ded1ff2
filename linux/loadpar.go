//go:build linux

package linux

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
)

// Concurrent load. The verifier walks a program in the thread that loads
// it, and creating a large map is mostly the kernel zeroing its memory:
// both are CPU work with no shared lock for a privileged loader, so a
// fresh start spreads them over the CPUs instead of doing one after the
// other as ebpf.LoadAndAssign does. What ends up loaded is the same: the
// same maps (created and pinned as the collection loader would), each
// program verified against them.

// loadConcurrently is spec.LoadAndAssign(obj, opts) with the maps created
// and the programs loaded by up to loadWorkers goroutines at once. When
// then is not nil it is called with the maps (by their names in spec)
// while the programs load, and the load fails if it does.
func loadConcurrently(spec *ebpf.CollectionSpec, obj any, opts *ebpf.CollectionOptions, then func(map[string]*ebpf.Map) error) (retErr error) {
	maps := map[string]*ebpf.Map{}
	progs := map[string]*ebpf.Program{}
	defer func() {
		if retErr != nil {
			for _, m := range maps {
				m.Close()
			}
			for _, p := range progs {
				p.Close()
			}
		}
	}()
	var mu sync.Mutex
	var errs []error
	put := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}

	// The maps of no data section that nothing replaces: largest first.
	var mapNames []string
	for name := range spec.Maps {
		if opts.MapReplacements[name] == nil && !dataSection(name) {
			mapNames = append(mapNames, name)
		}
	}
	slices.SortFunc(mapNames, func(a, b string) int { return cmp.Compare(mapBytes(spec.Maps[b]), mapBytes(spec.Maps[a])) })
	parallel(len(mapNames), func(i int) {
		m, err := ebpf.NewMapWithOptions(spec.Maps[mapNames[i]], opts.Maps)
		if err != nil {
			put(fmt.Errorf("map %s: %w", mapNames[i], err))
			return
		}
		mu.Lock()
		maps[mapNames[i]] = m
		mu.Unlock()
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// The data sections (.rodata with the variables set, .bss), by the
	// collection loader: it gives them the flags and contents it would.
	repl := make(map[string]*ebpf.Map, len(spec.Maps))
	for name, m := range opts.MapReplacements {
		repl[name] = m
	}
	for name, m := range maps {
		repl[name] = m
	}
	shell := *spec
	shell.Programs = nil
	o := *opts
	o.MapReplacements = repl
	coll, err := ebpf.NewCollectionWithOptions(&shell, o)
	if err != nil {
		return err
	}
	for name, m := range coll.Maps {
		if repl[name] == nil {
			repl[name] = m
			maps[name] = m
		} else {
			m.Close() // a clone of one we hold
		}
	}
	for name := range opts.MapReplacements {
		// Given by the caller: obj gets a clone, as from LoadAndAssign.
		c, err := opts.MapReplacements[name].Clone()
		if err != nil {
			return err
		}
		maps[name] = c
	}

	// Every program against those maps, longest first: the verifier's walk
	// grows with the instructions.
	var progNames []string
	for name, ps := range spec.Programs {
		if ps.Type != ebpf.UnspecifiedProgram {
			progNames = append(progNames, name)
		}
	}
	slices.SortFunc(progNames, func(a, b string) int {
		return cmp.Compare(len(spec.Programs[b].Instructions), len(spec.Programs[a].Instructions))
	})
	o.MapReplacements = repl
	thenErr := make(chan error, 1)
	if then != nil {
		go func() { thenErr <- then(maps) }()
	} else {
		thenErr <- nil
	}
	parallel(len(progNames), func(i int) {
		name := progNames[i]
		one := &ebpf.CollectionSpec{Maps: spec.Maps, Programs: map[string]*ebpf.ProgramSpec{name: spec.Programs[name]}, ByteOrder: spec.ByteOrder, Types: spec.Types}
		c, err := ebpf.NewCollectionWithOptions(one, o)
		if err != nil {
			put(err)
			return
		}
		p := c.DetachProgram(name)
		c.Close()
		mu.Lock()
		progs[name] = p
		mu.Unlock()
	})
	if err := <-thenErr; err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return assignObjects(obj, progs, maps)
}

// loadWorkers is how many maps or programs load at once: one per CPU.
func loadWorkers() int { return max(2, runtime.NumCPU()) }

// parallel runs fn(0..n-1) on loadWorkers goroutines, in order of i.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(n, loadWorkers()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func dataSection(name string) bool {
	return name == ".bss" || strings.HasPrefix(name, ".data") || strings.HasPrefix(name, ".rodata")
}

// mapBytes is roughly what creating a map of spec costs.
func mapBytes(ms *ebpf.MapSpec) uint64 {
	return uint64(ms.MaxEntries) * uint64(ms.KeySize+ms.ValueSize)
}
