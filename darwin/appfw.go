package darwin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/exewall/exewall/engine"
)

// SocketFilterFW is the Application Firewall's command-line tool.
const SocketFilterFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"

// appfwFile records, across daemon restarts, what exewall changed in the
// Application Firewall, so that rm and reset put back exactly what was
// there.
const appfwFile = "appfw.json"

// Entry states in the Application Firewall's list of programs.
const (
	entryAbsent  = "absent"
	entryAllowed = "allowed"
	entryBlocked = "blocked"
)

// appFirewall enforces exe: rules with macOS's Application Firewall, which
// blocks all of a program's incoming connections or none (`socketfilterfw
// --blockapp`). It touches only the entries of the programs exewall
// manages: for each it records what the list said before (no entry, an
// allowed or a blocked entry) and puts that back when the rule goes and at
// reset. It turns the firewall on only while it blocks a program, and
// then off again only if it was off before. Its methods are safe for
// concurrent use.
type appFirewall struct {
	Tool     runner       // runs socketfilterfw
	StateDir string       // where appfwFile is kept; in memory only when empty
	Log      *slog.Logger // nil for slog.Default()

	mu sync.Mutex
	st *appfwState // nil until loaded
}

// appfwState is appfwFile.
type appfwState struct {
	// Prior is what the list said of each program exewall blocks, before it
	// did.
	Prior map[string]string `json:"prior"`
	// EnabledByUs is set when exewall turned the firewall on: it turns it
	// off again when it blocks nothing any more.
	EnabledByUs bool `json:"enabled_by_us,omitempty"`
}

func (a *appFirewall) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// blockedExes are the programs a policy has the Application Firewall block:
// its exe: rules (checkSelectors lets only deny rules without entries
// through).
func blockedExes(p *engine.Policy) []string {
	var out []string
	for _, r := range p.Rules {
		if r.Exe != "" {
			out = append(out, r.Exe)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (a *appFirewall) load() error {
	if a.st != nil {
		return nil
	}
	a.st = &appfwState{Prior: map[string]string{}}
	if a.StateDir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(a.StateDir, appfwFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read application firewall state: %w", err)
	}
	if err := json.Unmarshal(data, a.st); err != nil {
		return fmt.Errorf("read application firewall state %s: %w", filepath.Join(a.StateDir, appfwFile), err)
	}
	if a.st.Prior == nil {
		a.st.Prior = map[string]string{}
	}
	return nil
}

func (a *appFirewall) save() error {
	if a.StateDir == "" {
		return nil
	}
	path := filepath.Join(a.StateDir, appfwFile)
	if len(a.st.Prior) == 0 && !a.st.EnabledByUs {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.Marshal(a.st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (a *appFirewall) run(ctx context.Context, args ...string) ([]byte, error) {
	return a.Tool.Run(ctx, nil, args...)
}

// Apply makes the Application Firewall block exactly exes among the
// programs exewall manages: new ones are added (if the list had no entry)
// and blocked, ones no longer wanted get their previous entry back. The
// firewall is turned on while exes is not empty.
func (a *appFirewall) Apply(ctx context.Context, exes []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.load(); err != nil {
		return err
	}
	var fresh []string
	for _, exe := range exes {
		if _, ok := a.st.Prior[exe]; !ok {
			fresh = append(fresh, exe)
		}
	}
	if len(fresh) > 0 {
		entries, err := a.list(ctx)
		if err != nil {
			return err
		}
		for _, exe := range fresh {
			prior := entries[exe]
			if prior == "" {
				prior = entryAbsent
			}
			a.st.Prior[exe] = prior
			if err := a.save(); err != nil { // before the change: a crash still restores it
				return err
			}
			if prior == entryAbsent {
				if _, err := a.run(ctx, "--add", exe); err != nil {
					return fmt.Errorf("application firewall: %w", err)
				}
			}
			if _, err := a.run(ctx, "--blockapp", exe); err != nil {
				return fmt.Errorf("application firewall: %w", err)
			}
			a.log().Info("application firewall blocks the program's incoming connections (inbound only)", "exe", exe, "entry_before", prior)
		}
	}
	for _, exe := range sortedKeys(a.st.Prior) {
		if !slices.Contains(exes, exe) {
			if err := a.restore(ctx, exe); err != nil {
				return err
			}
		}
	}
	return a.global(ctx, len(exes) > 0)
}

// Remove puts back every entry exewall changed and the firewall's previous
// global state (exewall reset, rm of the last rule, --detach-on-exit).
func (a *appFirewall) Remove(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.load(); err != nil {
		return err
	}
	for _, exe := range sortedKeys(a.st.Prior) {
		if err := a.restore(ctx, exe); err != nil {
			return err
		}
	}
	return a.global(ctx, false)
}

// Blocked returns the programs exewall has the firewall block.
func (a *appFirewall) Blocked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.load() != nil {
		return nil
	}
	return sortedKeys(a.st.Prior)
}

// restore gives exe its entry from before exewall blocked it.
func (a *appFirewall) restore(ctx context.Context, exe string) error {
	var err error
	switch a.st.Prior[exe] {
	case entryAbsent:
		_, err = a.run(ctx, "--remove", exe)
	case entryAllowed:
		_, err = a.run(ctx, "--unblockapp", exe)
	}
	if err != nil {
		return fmt.Errorf("application firewall: %w", err)
	}
	delete(a.st.Prior, exe)
	return a.save()
}

// global turns the firewall on when on and it is off (remembering that it
// was exewall), and off again when exewall turned it on and blocks nothing.
func (a *appFirewall) global(ctx context.Context, on bool) error {
	if on == a.st.EnabledByUs {
		return nil
	}
	if !on {
		if _, err := a.run(ctx, "--setglobalstate", "off"); err != nil {
			return fmt.Errorf("application firewall: %w", err)
		}
		a.st.EnabledByUs = false
		return a.save()
	}
	out, err := a.run(ctx, "--getglobalstate")
	if err != nil {
		return fmt.Errorf("application firewall: %w", err)
	}
	if globalOn(out) {
		return nil // someone else's: left alone, never turned off by us
	}
	a.st.EnabledByUs = true
	if err := a.save(); err != nil {
		return err
	}
	if _, err := a.run(ctx, "--setglobalstate", "on"); err != nil {
		return fmt.Errorf("application firewall: %w", err)
	}
	return nil
}

// globalOn reads `--getglobalstate`: "Firewall is enabled. (State = 1)".
func globalOn(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "State = 1") || strings.Contains(s, "State = 2") ||
		strings.Contains(strings.ToLower(s), "firewall is enabled")
}

var (
	appLineRE   = regexp.MustCompile(`^\s*\d+\s*:\s*(.+?)\s*$`)
	appStatusRE = regexp.MustCompile(`\(\s*(Allow|Block) incoming connections\s*\)`)
)

// list reads `--listapps`: each program's path on a numbered line, its
// state in parentheses on the next.
func (a *appFirewall) list(ctx context.Context) (map[string]string, error) {
	out, err := a.run(ctx, "--listapps")
	if err != nil {
		return nil, fmt.Errorf("application firewall: %w", err)
	}
	entries := map[string]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := appStatusRE.FindStringSubmatch(line); m != nil && cur != "" {
			entries[cur] = entryAllowed
			if m[1] == "Block" {
				entries[cur] = entryBlocked
			}
			cur = ""
			continue
		}
		if m := appLineRE.FindStringSubmatch(line); m != nil {
			cur = m[1]
		}
	}
	return entries, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
