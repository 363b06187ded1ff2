//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// The exec hook records, per executable identity, the path it was executed
// by (exe_names). Events carry the identity the kernel judged: naming them
// from it, not from /proc/PID/exe read later, credits an attempt to the
// program that made it even when the process has since exec'd another
// binary, exited, or its PID was reused.

const exeNamesPin = "exe_names"

// exeNamesMap adopts the pinned exe_names map, so a restarted daemon names
// the programs started while it was down, or creates and pins a new one.
func (b *Backend) exeNamesMap(spec *ebpf.CollectionSpec) (*ebpf.Map, error) {
	ms, ok := spec.Maps[exeNamesPin]
	if !ok {
		return nil, fmt.Errorf("exec hook has no %s map", exeNamesPin)
	}
	ms = ms.Copy()
	ms.Pinning = ebpf.PinByName
	opts := ebpf.MapOptions{PinPath: b.cfg.PinDir}
	m, err := ebpf.NewMapWithOptions(ms, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		os.Remove(filepath.Join(b.cfg.PinDir, exeNamesPin))
		m, err = ebpf.NewMapWithOptions(ms, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("exe_names map: %w", err)
	}
	return m, nil
}

// exeOf names the executable an event's process was running, from the
// identity in the event. It returns "" rather than a guess: a name is
// given only when it was recorded for that identity at exec, or when the
// file a PID runs now is verifiably that identity.
func (b *Backend) exeOf(ev *datapathEvent) string {
	if ev.HasExe == 0 {
		return ""
	}
	id := engine.FileID{Dev: ev.Exe.Dev, Gen: ev.Exe.Igen, Ino: ev.Exe.Ino}
	var candidates []string
	if m := b.exec.ExeNames; m != nil {
		var n execwatchExeName
		if err := m.Lookup(ev.Exe, &n); err == nil {
			path := fromInt8(n.Path[:])
			if filepath.IsAbs(path) {
				return filepath.Clean(path)
			}
			// A relative name (./prog): what the process that executed it
			// runs, if that is still this identity.
			candidates = append(candidates, fmt.Sprintf("/proc/%d/exe", n.Tgid))
		}
	}
	candidates = append(candidates, fmt.Sprintf("/proc/%d/exe", ev.Pid))
	for _, c := range candidates {
		if exe, ok := b.sameIdentity(c, id); ok {
			return exe
		}
	}
	return ""
}

// sameIdentity reads the link at proc and returns its target when the file
// it opens has the identity want.
func (b *Backend) sameIdentity(proc string, want engine.FileID) (string, bool) {
	exe, err := os.Readlink(proc)
	if err != nil || b.resolver == nil {
		return "", false
	}
	got, ok, err := b.resolver.Identify(proc)
	if err != nil || !ok || got.Dev != want.Dev || got.Ino != want.Ino {
		return "", false
	}
	if got.Gen != 0 && got.Gen != want.Gen {
		return "", false // stat() fallback reports no generation
	}
	return strings.TrimSuffix(exe, " (deleted)"), true
}
