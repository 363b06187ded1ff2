package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows"
	xwindows "golang.org/x/sys/windows"
)

// Under Program Files, not ProgramData: any user may create files and
// folders in ProgramData and would own them (and so could write the policy
// the service enforces), while only administrators may write under Program
// Files. wireguard-windows keeps its configuration there for the same
// reason.
var (
	defaultPolicy   = filepath.Join(programFiles(), "exewall", "policy.yaml")
	defaultStateDir = filepath.Join(programFiles(), "exewall", "state")
)

const defaultPinDir = "" // nothing is pinned on Windows

func programFiles() string {
	if p, err := xwindows.KnownFolderPath(xwindows.FOLDERID_ProgramFiles, 0); err == nil && p != "" {
		return p
	}
	if p := os.Getenv("ProgramFiles"); p != "" {
		return p
	}
	return `C:\Program Files`
}

// newBackend opens WFP. Its filters match the app ID WFP derives from a
// path, so executables are known by path (engine.StatResolver).
func newBackend(ctx context.Context, cfg Config, log *slog.Logger) (engine.Backend, engine.Resolver, func(), error) {
	b, err := windows.New(ctx, windows.Options{Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	return b, engine.StatResolver{}, func() {}, nil
}

// Reset deletes every filter in exewall's sublayer, the sublayer and the
// provider; no daemon needs to run. It returns what it removed.
func Reset(ctx context.Context, _ Config) (string, error) {
	b, err := windows.New(ctx, windows.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	rerr := b.Reset(ctx)
	cerr := b.Close()
	if rerr != nil {
		return "", rerr
	}
	if cerr != nil {
		return "", cerr
	}
	return "removed exewall's WFP filters, sublayer and provider", nil
}
