package darwin

import "github.com/exewall/exewall/engine"

var _ engine.Refuser = (*Backend)(nil)

// Refuse implements engine.Refuser: what checkSelectors refuses never
// reaches Apply.
func (b *Backend) Refuse(p *engine.Policy) error { return checkSelectors(p) }
