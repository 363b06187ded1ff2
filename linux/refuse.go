//go:build linux

package linux

import "github.com/exewall/exewall/engine"

var _ engine.Refuser = (*Backend)(nil)

// Refuse implements engine.Refuser: what the kernel programs cannot judge yet
// is refused before Apply, never enforced as something weaker.
func (b *Backend) Refuse(p *engine.Policy) error {
	if err := engine.RefuseNames(p, "the Linux DNS forwarder is not built yet"); err != nil {
		return err
	}
	return b.refuseInbound(p)
}
