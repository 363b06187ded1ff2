//go:build linux

package linux

import (
	"fmt"

	"github.com/exewall/exewall/engine"
)

// refuseInbound refuses default_inbound and "in" entries when the inbound
// hooks are not in force on this kernel (or are switched off for a test).
func (b *Backend) refuseInbound(p *engine.Policy) error {
	b.mu.Lock()
	ok, err := b.inboundOK, b.optional["inbound"]
	b.mu.Unlock()
	if ok && err == nil {
		return nil
	}
	why := "the inbound hooks did not load"
	if err != nil {
		why = fmt.Sprintf("the inbound hooks are not in force (%v)", plainError(err))
	}
	return engine.RefuseInbound(p, why)
}
