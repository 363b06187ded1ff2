//go:build linux

package linux

// retire keeps what a removed rule's counter slot counted in the totals
// (the memo's pending allows included), so `status` totals never go
// backwards while the daemon runs (the slot is zeroed, with a new epoch,
// when another rule gets it).
func (b *Backend) retire(slot uint32) {
	sums, err := b.countSlots(map[uint32]bool{slot: true})
	if err != nil {
		b.log.Warn("read counter of a removed rule", "slot", slot, "err", err)
		return
	}
	b.retired = b.retired.Add(sums[slot])
}
