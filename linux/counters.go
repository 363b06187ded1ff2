//go:build linux

package linux

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// The memo (bpf/exewall.h, struct memo) counts the allows it answers in its
// own slots; they move into counters when a slot is rewritten. A counter
// total is therefore counters plus the pending allows of the slots that
// count for it.
const (
	memoCPUs     = 64
	memoWays     = 2
	memoTagBase  = 0x4d450000
	memoTag      = memoTagBase | uint32(unsafe.Sizeof(datapathMemo{}))
	memoSeqOdd   = 1 << 32
	countRetries = 100
)

var lastEpoch atomic.Uint64

// newEpoch returns a counter epoch never handed out before by this process
// and later than any of an earlier one (nanoseconds since 1970).
func newEpoch() uint64 {
	for {
		old := lastEpoch.Load()
		e := max(old+1, uint64(time.Now().UnixNano()))
		if lastEpoch.CompareAndSwap(old, e) {
			return e
		}
	}
}

// readCounters sums the counters of every slot in use.
func (b *Backend) readCounters() (map[uint32]engine.Counters, error) {
	used := map[uint32]bool{0: true}
	for _, s := range b.slots.all() {
		used[s] = true
	}
	return b.countSlots(used)
}

// readMemo reads the memo slots of the CPUs there are.
func (b *Backend) readMemo() ([]datapathMemo, error) {
	out := make([]datapathMemo, min(b.ncpu, memoCPUs)*memoWays)
	for i := range out {
		if err := b.objs.RuleMemo.Lookup(uint32(i), &out[i]); err != nil {
			return nil, fmt.Errorf("read memo: %w", err)
		}
	}
	return out, nil
}

// countSlots sums counters and the memo's pending allows of the slots in
// used. The memo is read before and after counters; when a slot was
// rewritten in between (its seq moved) or is being rewritten (seq odd),
// its pending allows may be in both or in neither, so it reads again.
func (b *Backend) countSlots(used map[uint32]bool) (map[uint32]engine.Counters, error) {
	for try := 0; ; try++ {
		last := try == countRetries
		before, err := b.readMemo()
		if err != nil {
			return nil, err
		}
		if !memoSteady(before, nil) && !last {
			continue
		}
		wantEpochs := map[uint32]bool{}
		for _, m := range before {
			if m.Tag == memoTag && uint32(m.State) != 0 && used[m.Counter] {
				wantEpochs[m.Counter] = true
			}
		}
		sums, epochs, err := b.sumCounters(used, wantEpochs)
		if err != nil {
			return nil, err
		}
		after, err := b.readMemo()
		if err != nil {
			return nil, err
		}
		if !memoSteady(before, after) && !last {
			continue
		}
		for i, m := range after {
			n := uint32(m.State)
			if m.Tag != memoTag || n == 0 || !wantEpochs[m.Counter] {
				continue
			}
			if cpu := i / memoWays; cpu < len(epochs[m.Counter]) && epochs[m.Counter][cpu] == m.Epoch {
				c := sums[m.Counter]
				c.Allowed += uint64(n)
				sums[m.Counter] = c
			}
		}
		return sums, nil
	}
}

// memoSteady reports whether no slot of before is being rewritten and,
// with after, none was rewritten in between.
func memoSteady(before, after []datapathMemo) bool {
	for i, m := range before {
		if m.Tag != memoTag {
			continue // another layout (an upgrade): counts nothing
		}
		if m.State&memoSeqOdd != 0 {
			return false
		}
		if after != nil && after[i].State>>32 != m.State>>32 {
			return false
		}
	}
	return true
}

// sumCounters sums the per-CPU counters of the slots in used, and returns
// the per-CPU epochs of those in epochsOf.
func (b *Backend) sumCounters(used, epochsOf map[uint32]bool) (map[uint32]engine.Counters, map[uint32][]uint64, error) {
	out := make(map[uint32]engine.Counters, len(used))
	epochs := map[uint32][]uint64{}
	add := func(slot uint32, vals []datapathCounter) {
		var c engine.Counters
		for _, v := range vals {
			c = c.Add(engine.Counters{Allowed: v.Allowed, Denied: v.Denied, Audited: v.Audited})
		}
		out[slot] = c
		if epochsOf[slot] {
			e := make([]uint64, len(vals))
			for cpu, v := range vals {
				e[cpu] = v.Epoch
			}
			epochs[slot] = e
		}
	}
	byChunk := map[uint32][]uint32{}
	for slot := range used {
		byChunk[slot>>counterChunkBits] = append(byChunk[slot>>counterChunkBits], slot)
	}
	vals := make([]datapathCounter, counterChunk*b.ncpu)
	for i, slots := range byChunk {
		if len(slots) <= 32 {
			// Few rules in this chunk: look up just their slots.
			for _, slot := range slots {
				one, err := b.counters.lookup(slot)
				if err != nil {
					return nil, nil, fmt.Errorf("read counter: %w", err)
				}
				add(slot, one)
			}
			continue
		}
		ok, err := b.counters.chunk(i, vals)
		if err != nil {
			return nil, nil, fmt.Errorf("read counters: %w", err)
		}
		if !ok {
			clear(vals)
		}
		for _, slot := range slots {
			k := int(slot & (counterChunk - 1))
			add(slot, vals[k*b.ncpu:(k+1)*b.ncpu])
		}
	}
	return out, epochs, nil
}

// The counters are chunks of counterChunk per-CPU slots in an array of
// maps (bpf/maps.h, COUNTER_CHUNK): a chunk is created when a slot in it is
// first handed out and never replaced, so a daemon with few rules holds one
// chunk instead of maxRules+1 slots on every CPU, and no count is ever
// copied (none can be lost while a policy grows). Slots are handed out in
// increasing order (slotFor) and wrap within the chunks in place while at
// most half their slots are in use, else go on into a new chunk.
const (
	counterChunkBits = 9
	counterChunk     = 1 << counterChunkBits
)

type counterChunks struct {
	outer  *ebpf.Map
	spec   *ebpf.MapSpec // a chunk's
	chunks []*ebpf.Map   // by index; nil: not in place
	ncpu   int
	// unused marks, in the chunks this process created, the slots never
	// handed to a rule since: the kernel created them zero, no program
	// has counted in them and no memo names them, so a rule they are
	// handed to needs no reset (nil: a chunk found in place, or none).
	unused []*chunkBits
}

// chunkBits is one bit per slot of a chunk.
type chunkBits [counterChunk / 64]uint64

// newChunkBits has every slot of a chunk set.
func newChunkBits() *chunkBits {
	var b chunkBits
	for i := range b {
		b[i] = ^uint64(0)
	}
	return &b
}

// openCounterChunks opens the chunks in place in outer and puts chunk 0
// (the default's slot) in place if it is not.
func openCounterChunks(outer *ebpf.Map, spec *ebpf.MapSpec, ncpu int) (*counterChunks, error) {
	if spec == nil || outer.Type() != ebpf.ArrayOfMaps {
		return nil, errors.New("map counters is not an array of chunks")
	}
	is := spec.Copy()
	is.Name, is.Pinning, is.Contents = "counters", ebpf.PinNone, nil
	c := &counterChunks{outer: outer, spec: is, chunks: make([]*ebpf.Map, outer.MaxEntries()), ncpu: ncpu, unused: make([]*chunkBits, outer.MaxEntries())}
	idx, ids, err := chunksInPlace(outer)
	if err != nil {
		return nil, fmt.Errorf("counters chunks: %w", err)
	}
	for k, i := range idx {
		if int(i) >= len(c.chunks) {
			continue
		}
		if c.chunks[i], err = ebpf.NewMapFromID(ebpf.MapID(ids[k])); err != nil {
			c.close()
			return nil, fmt.Errorf("counters chunk %d: %w", i, err)
		}
	}
	if err := c.ensure(0); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// chunksInPlace lists the slots of outer that hold a chunk and the chunks'
// map ids: in one batch (empty slots are skipped by the kernel) where it
// can, else slot by slot (a lookup that fails for every empty slot: 255 of
// the 256 for a daemon with few rules).
func chunksInPlace(outer *ebpf.Map) (idx, ids []uint32, err error) {
	n := int(outer.MaxEntries())
	idx, ids = make([]uint32, n), make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	got, err := outer.BatchLookup(&cursor, idx, ids, nil)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
		return idx[:got], ids[:got], nil
	}
	idx, ids = idx[:0], ids[:0]
	for i := range uint32(n) {
		var id uint32
		err := outer.Lookup(i, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("slot %d: %w", i, err)
		}
		idx, ids = append(idx, i), append(ids, id)
	}
	return idx, ids, nil
}

func (c *counterChunks) close() {
	if c == nil {
		return
	}
	for i, m := range c.chunks {
		if m != nil {
			m.Close()
			c.chunks[i] = nil
		}
	}
}

// limit is one past the last slot of the chunks in place.
func (c *counterChunks) limit() uint32 {
	for i := len(c.chunks) - 1; i >= 0; i-- {
		if c.chunks[i] != nil {
			return uint32(i+1) * counterChunk
		}
	}
	return 0
}

// ensure puts the chunk of slot in place.
func (c *counterChunks) ensure(slot uint32) error {
	i := slot >> counterChunkBits
	if int(i) >= len(c.chunks) {
		return fmt.Errorf("counter slot %d out of range", slot)
	}
	if c.chunks[i] != nil {
		return nil
	}
	m, err := ebpf.NewMap(c.spec)
	if err != nil {
		return fmt.Errorf("create counters chunk %d: %w", i, err)
	}
	if err := c.outer.Update(i, m, ebpf.UpdateAny); err != nil { // (arrays of maps take no other flag)
		m.Close()
		return fmt.Errorf("put counters chunk %d in place: %w", i, err)
	}
	c.chunks[i] = m
	c.unused[i] = newChunkBits()
	return nil
}

// ensureAll puts the chunks of slots in place. Every update of an array of
// maps waits for an RCU grace period (the kernel's maybe_wait_bpf_programs),
// milliseconds each: the missing chunks are created first and put in place
// together, in one batch (one grace period) where the kernel can, else
// side by side (their grace periods overlap).
func (c *counterChunks) ensureAll(slots []uint32) error {
	var idx []uint32
	want := map[uint32]bool{}
	for _, s := range slots {
		i := s >> counterChunkBits
		if int(i) >= len(c.chunks) {
			return fmt.Errorf("counter slot %d out of range", s)
		}
		if c.chunks[i] == nil && !want[i] {
			want[i] = true
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	made, err := c.place(idx)
	if err != nil {
		return err
	}
	c.install(idx, made)
	return nil
}

// install records chunks place put in place at idx.
func (c *counterChunks) install(idx []uint32, made []*ebpf.Map) {
	for k, i := range idx {
		c.chunks[i] = made[k]
		c.unused[i] = newChunkBits()
	}
}

// place creates chunks and puts them in place at idx (none of which is
// in place), touching nothing of c but its outer map: it may run beside an
// apply that reads c; install then records them.
func (c *counterChunks) place(idx []uint32) ([]*ebpf.Map, error) {
	var made []*ebpf.Map
	fail := func(err error) ([]*ebpf.Map, error) {
		for _, m := range made {
			m.Close()
		}
		return nil, err
	}
	fds := make([]uint32, 0, len(idx))
	for _, i := range idx {
		m, err := ebpf.NewMap(c.spec)
		if err != nil {
			return fail(fmt.Errorf("create counters chunk %d: %w", i, err))
		}
		made = append(made, m)
		fds = append(fds, uint32(m.FD()))
	}
	if err := putInPlace(c.outer, idx, fds, made); err != nil {
		// Chunks a failed batch did put in place are left where they
		// are (empty, as they would be): only this apply's view of them
		// is dropped; the next ensure puts new ones there.
		return fail(fmt.Errorf("put counters chunks in place: %w", err))
	}
	return made, nil
}

// putInPlace puts maps (fds) in slots idx of array of maps outer: in one
// batch (one RCU grace period) where the kernel can, else one update per
// slot, all at once so that their grace periods overlap.
func putInPlace(outer *ebpf.Map, idx, fds []uint32, maps []*ebpf.Map) error {
	if len(idx) == 1 {
		return outer.Update(idx[0], maps[0], ebpf.UpdateAny)
	}
	n, err := outer.BatchUpdate(idx, fds, nil)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k := n; k < len(idx); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = outer.Update(idx[k], maps[k], ebpf.UpdateAny)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reinstate puts back the chunks the daemon holds that are missing from
// or replaced in the array in force (bpftool map delete on the pinned
// counters): the programs would count nothing for their slots. The
// verdicts never depend on a chunk. It returns the chunks it put back.
func (c *counterChunks) reinstate() ([]uint32, error) {
	var put []uint32
	for i, m := range c.chunks {
		if m == nil {
			continue
		}
		if in, err := holds(c.outer, uint32(i), m); in || err != nil {
			if err != nil {
				return put, err
			}
			continue
		}
		if err := c.outer.Update(uint32(i), m, ebpf.UpdateAny); err != nil {
			return put, fmt.Errorf("put counters chunk %d back: %w", i, err)
		}
		put = append(put, uint32(i))
	}
	return put, nil
}

// lookup reads slot's per-CPU values (zero when its chunk is not in
// place).
func (c *counterChunks) lookup(slot uint32) ([]datapathCounter, error) {
	vals := make([]datapathCounter, c.ncpu)
	m := c.chunks[slot>>counterChunkBits]
	if m == nil {
		return vals, nil
	}
	err := m.Lookup(slot&(counterChunk-1), &vals)
	return vals, err
}

// chunk reads every slot of chunk i: vals[slot%counterChunk*ncpu+cpu].
func (c *counterChunks) chunk(i uint32, vals []datapathCounter) (bool, error) {
	m := c.chunks[i]
	if m == nil {
		return false, nil
	}
	keys := make([]uint32, counterChunk)
	var cursor ebpf.MapBatchCursor
	n, err := m.BatchLookup(&cursor, keys, vals, nil)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) && n == counterChunk {
		return true, nil
	}
	// No batches: one by one.
	for k := range uint32(counterChunk) {
		var one []datapathCounter
		if err := m.Lookup(k, &one); err != nil {
			return false, err
		}
		copy(vals[int(k)*c.ncpu:], one)
	}
	return true, nil
}

// reset zeroes slots with a new epoch each (slots handed to new rules);
// a slot never handed out since this process created its chunk is zero
// already and no memo names it: it is left as it is (epoch 0, which no
// slot handed out before has).
func (c *counterChunks) reset(slots []uint32) error {
	if err := c.ensureAll(slots); err != nil {
		return err
	}
	byChunk := map[uint32][]uint32{}
	for _, s := range slots {
		i, k := s>>counterChunkBits, s&(counterChunk-1)
		if u := c.unused[i]; u != nil && u[k/64]&(1<<(k%64)) != 0 {
			u[k/64] &^= 1 << (k % 64) // zero since its chunk was created
			continue
		}
		byChunk[i] = append(byChunk[i], k)
	}
	for i, keys := range byChunk {
		zero := make([]datapathCounter, len(keys)*c.ncpu)
		for k := range keys {
			// A new epoch: allows the memo counted for the slot's last rule
			// are not moved into this one's (bpf/exewall.h, struct memo).
			e := newEpoch()
			for cpu := 0; cpu < c.ncpu; cpu++ {
				zero[k*c.ncpu+cpu].Epoch = e
			}
		}
		if _, err := c.chunks[i].BatchUpdate(keys, zero, nil); err != nil {
			return err
		}
	}
	return nil
}

// copyFrom copies the non-zero slots of old counters (an earlier layout:
// one per-CPU array, or chunks) into these, value by common prefix.
func (c *counterChunks) copyFrom(old *ebpf.Map) (int, error) {
	if old.Type() != ebpf.ArrayOfMaps {
		return c.copyArray(old, 0)
	}
	n := 0
	for i := range old.MaxEntries() {
		inner, err := innerMapAt(old, i)
		if err != nil {
			return n, err
		}
		if inner == nil {
			continue
		}
		got, err := c.copyArray(inner, i*inner.MaxEntries())
		inner.Close()
		n += got
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyArray copies the non-zero slots of per-CPU array from, whose slot 0
// is counter slot base.
func (c *counterChunks) copyArray(from *ebpf.Map, base uint32) (int, error) {
	var k uint32
	var pv [][]byte
	n := 0
	it := from.Iterate()
	for it.Next(&k, &pv) {
		zero := true
		cpus := make([][]byte, len(pv))
		for i := range pv {
			cpus[i] = resize(pv[i], int(c.spec.ValueSize))
			zero = zero && allZero(pv[i])
		}
		slot := base + k
		if zero || slot>>counterChunkBits >= uint32(len(c.chunks)) {
			continue
		}
		if err := c.ensure(slot); err != nil {
			return n, err
		}
		if err := c.chunks[slot>>counterChunkBits].Update(slot&(counterChunk-1), cpus, ebpf.UpdateAny); err != nil {
			return n, err
		}
		c.unused[slot>>counterChunkBits] = nil // holds counts now
		n++
	}
	return n, it.Err()
}
