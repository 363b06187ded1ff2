//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func toInt8(s string) []int8 {
	out := make([]int8, len(s))
	for i := range len(s) {
		out[i] = int8(s[i])
	}
	return out
}

func fromInt8(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func batchUpdate[K comparable, V any](m kmap, entries map[K]V) error {
	keys := make([]K, 0, len(entries))
	vals := make([]V, 0, len(entries))
	for k, v := range entries {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return batchUpdateSlices(m, keys, vals)
}

// writeDiff turns map m from holding old into holding want: keys only in
// old are deleted, keys new or with another value are written, the rest is
// not touched.
func writeDiff[K, V comparable](m kmap, old, want map[K]V) error {
	var gone []K
	for k := range old {
		if _, ok := want[k]; !ok {
			gone = append(gone, k)
		}
	}
	if err := batchDelete(m, gone); err != nil {
		return err
	}
	var keys []K
	var vals []V
	for k, v := range want {
		if was, ok := old[k]; !ok || was != v {
			keys = append(keys, k)
			vals = append(vals, v)
		}
	}
	return batchUpdateSlices(m, keys, vals)
}

func batchUpdateSlices[K comparable, V any](m kmap, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	for done, tries := 0, 0; done < len(keys); {
		n, err := m.BatchUpdate(keys[done:], vals[done:], nil)
		done += n
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			for i := done; i < len(keys); i++ {
				if err := retryNoMem(func() error { return m.Update(keys[i], vals[i], ebpf.UpdateAny) }); err != nil {
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

const maxNoMemRetries = 200

// retryNoMem retries a map update that failed with ENOMEM. Maps without
// preallocation take elements from the kernel's BPF allocator, whose per-CPU
// caches refill asynchronously: a burst of thousands of inserts can outrun
// the refill and fail although memory is plentiful. A short pause lets it
// catch up; a real shortage still fails after the retries.
func retryNoMem(f func() error) error {
	for tries := 0; ; tries++ {
		err := f()
		if err == nil || !errors.Is(err, unix.ENOMEM) || tries == maxNoMemRetries {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func batchDelete[K comparable](m kmap, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(keys, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// scanMap puts the entries of m that keep accepts in out: in batches of
// thousands per system call where the kernel can, else one by one.
func scanMap[K comparable, V any](m kmap, keep func(K) bool, out map[K]V) error {
	err := eachBatched(m, func(k *K, v *V) bool {
		if keep(*k) {
			out[*k] = *v
		}
		return true
	})
	if !errors.Is(err, errNoBatches) {
		return err
	}
	// One by one, from the start: what the batches gave is written again.
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if keep(k) {
			out[k] = v
		}
	}
	return it.Err()
}

// pinMaps pins every datapath map under its name (after a migration).
func (b *Backend) pinMaps() error {
	for name, m := range b.mapsByName() {
		path := filepath.Join(b.cfg.PinDir, name)
		os.Remove(path)
		if err := m.Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// tgidIdents keeps identities by thread group id where cgroup programs
// cannot use task storage. With task storage no program touches it (the
// loader's constant prunes that code), so it is created with one entry
// instead of 65,536 preallocated LRU elements (about 7 MiB of kernel
// memory), unless an earlier daemon pinned it larger: then it keeps that
// size, so the pinned maps stay compatible.
const tgidIdents = "proc_idents"

// sizeTgidIdents sizes tgidIdents for taskStorage and returns its full
// size; full is that size when known (0: read it from spec).
func sizeTgidIdents(spec *ebpf.CollectionSpec, pinDir string, taskStorage uint8, full uint32) uint32 {
	ms := spec.Maps[tgidIdents]
	if ms == nil {
		return full
	}
	if full == 0 {
		full = ms.MaxEntries
	}
	var pinned *ebpf.Map
	if pinDir != "" {
		pinned, _ = ebpf.LoadPinnedMap(filepath.Join(pinDir, tgidIdents), nil)
	}
	if pinned != nil {
		defer pinned.Close()
	}
	if taskStorage == 0 {
		ms.MaxEntries = full
		if pinned != nil && pinned.MaxEntries() == 1 {
			// Left by a load the verifier refused task storage to: no
			// program ever used it.
			os.Remove(filepath.Join(pinDir, tgidIdents))
		}
		return full
	}
	ms.MaxEntries = 1
	if pinned != nil && pinned.MaxEntries() > 1 {
		ms.MaxEntries = pinned.MaxEntries()
	}
	return full
}
