package windows

import "github.com/exewall/exewall/engine"

var _ engine.Refuser = (*Backend)(nil)

// Refuse implements engine.Refuser: what check refuses never reaches Apply.
func (b *Backend) Refuse(p *engine.Policy) error { return check(p) }
