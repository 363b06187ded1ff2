//go:build linux

package linux

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

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
	for _, s := range b.slots {
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
	if len(used) <= 256 {
		// Few rules: look up just their slots instead of the whole array.
		vals := make([]datapathCounter, b.ncpu)
		for slot := range used {
			if err := b.objs.Counters.Lookup(slot, &vals); err != nil {
				return nil, nil, fmt.Errorf("read counter: %w", err)
			}
			add(slot, vals)
		}
		return out, epochs, nil
	}
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]datapathCounter, chunk*b.ncpu)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := b.objs.Counters.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			if used[keys[i]] {
				add(keys[i], vals[i*b.ncpu:(i+1)*b.ncpu])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, epochs, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read counters: %w", err)
		}
		if n < chunk {
			return out, epochs, nil
		}
	}
}
