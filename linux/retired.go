//go:build linux

package linux

import "github.com/exewall/exewall/engine"

// retire keeps what a removed rule's counter slot counted in the totals, so
// `status` totals never go backwards while the daemon runs (the slot is
// zeroed when another rule gets it).
func (b *Backend) retire(slot uint32) {
	vals := make([]datapathCounter, b.ncpu)
	if err := b.objs.Counters.Lookup(slot, &vals); err != nil {
		b.log.Warn("read counter of a removed rule", "slot", slot, "err", err)
		return
	}
	for _, v := range vals {
		b.retired = b.retired.Add(engine.Counters{Allowed: v.Allowed, Denied: v.Denied, Audited: v.Audited})
	}
}
