//go:build linux

package linux

import "github.com/exewall/exewall/engine"

var _ engine.Refuser = (*Backend)(nil)

// Refuse implements engine.Refuser: what the kernel programs cannot judge yet
// is refused before Apply, never enforced as something weaker.
func (b *Backend) Refuse(p *engine.Policy) error {
	if p.HasNames() {
		if err := b.dnsReady(); err != nil {
			return engine.RefuseNames(p, "this kernel refused the DNS hooks ("+err.Error()+")")
		}
	}
	return b.refuseInbound(p)
}
