//go:build linux

package linux

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
)

// Reset implements engine.Resetter: detach and unpin everything.
func (b *Backend) Reset(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reset()
}

func (b *Backend) reset() error {
	b.closeGuard(true)
	b.closeInbound(true)
	if b.execLink != nil {
		b.execLink.Unpin()
		b.execLink.Close()
		b.execLink = nil
	}
	for _, l := range b.identLinks {
		l.Unpin()
		l.Close()
	}
	b.identLinks = nil
	for name, l := range b.links {
		l.Unpin()
		l.Close()
		delete(b.links, name)
	}
	return resetPins(b.cfg.PinDir)
}

// Reset removes everything exewall pinned under pinDir: links (which detaches
// the programs), programs and maps, and the pin dir's lock. It needs no
// running daemon, and refuses while one runs.
func Reset(ctx context.Context, cfg Config) error {
	pinDir := cfg.PinDir
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	lock, err := lockPinDir(pinDir)
	if err != nil {
		return err
	}
	defer lock.Close() // removes the lock file a killed daemon left
	return resetPins(pinDir)
}

func resetPins(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(pinDir, e.Name())
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			l.Unpin()
			l.Close()
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
