package daemon

import (
	"context"
	"log/slog"

	"github.com/exewall/exewall/darwin"
	"github.com/exewall/exewall/engine"
)

const (
	defaultPolicy   = "/etc/exewall/policy.yaml"
	defaultStateDir = darwin.DefaultStateDir // also holds pf's enable token
	defaultPinDir   = ""                     // nothing is pinned on macOS
)

// newBackend starts the pf backend. pf cannot select by executable: the
// backend refuses every exe: rule with its own message (naming user: and
// group: rules as the alternative), so the resolver never matches a file
// and Validate leaves exe: rules to that refusal instead of judging them
// as files first.
func newBackend(_ context.Context, cfg Config, log *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	b, err := darwin.New(darwin.Config{StateDir: cfg.StateDir, DetachOnClose: cfg.DetachOnExit, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	return b, noExeResolver{}, func() {}, nil
}

// noExeResolver knows no executable.
type noExeResolver struct{}

func (noExeResolver) Identify(string) (engine.FileID, bool, error) {
	return engine.FileID{}, false, nil
}

// Reset flushes exewall's anchor and hands back the pf reference a daemon
// kept in cfg.StateDir; no daemon needs to run. It returns what it removed.
func Reset(ctx context.Context, cfg Config) (string, error) {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = defaultStateDir
	}
	if err := darwin.Reset(ctx, stateDir); err != nil {
		return "", err
	}
	return "removed exewall's pf anchor " + darwin.AnchorPath + " and released its pf reference", nil
}
