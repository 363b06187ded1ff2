package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/exewall/exewall/engine"
)

// watchPolicy reloads the policy when its file changes. The directory is
// watched, not the file: editors, config-management tools and Kubernetes
// ConfigMaps (a ..data symlink swap) replace the file by rename, which a
// watch on the file itself would lose. Events are debounced; a reload of
// an unchanged file (the daemon's own writes) does nothing.
func watchPolicy(ctx context.Context, m *engine.Manager, path string, log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	// A symlinked file may live elsewhere: watch its directory too.
	names := map[string]bool{filepath.Base(path): true}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		names[filepath.Base(target)] = true
		if filepath.Dir(target) != dir {
			w.Add(filepath.Dir(target))
		}
	}
	// Only the policy file and Kubernetes' ..data / ..<timestamp> entries
	// matter; other files in the directory (our own temporary and probe
	// files among them) would otherwise trigger reloads that trigger
	// probes that trigger reloads.
	relevant := func(name string) bool {
		base := filepath.Base(name)
		return names[base] || strings.HasPrefix(base, "..")
	}
	go func() {
		defer w.Close()
		const quiet = 200 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod || !relevant(ev.Name) {
					continue
				}
				timer.Reset(quiet)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("policy watch", "err", err)
			case <-timer.C:
				reload(ctx, m, log, "file changed")
			}
		}
	}()
	return nil
}
