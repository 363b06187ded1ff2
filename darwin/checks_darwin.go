//go:build darwin

package darwin

import (
	"context"

	"github.com/exewall/exewall/engine"
)

// Checks reports, for `exewall doctor`, what this Mac supports, without
// starting a backend (New runs tcpdump on pflog0, creating the interface
// when it is missing; doctor changes nothing).
func Checks(ctx context.Context, cfg Config) []engine.Check {
	b := &Backend{anchor: &pfAnchor{Pfctl: command("pfctl"), Path: AnchorPath}}
	return b.Checks(ctx)
}
