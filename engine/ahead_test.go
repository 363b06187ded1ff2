package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// TestParseAhead: a daemon's Load puts in force what its policy file holds
// when Load reads it, whether the parse made ahead was of that (the usual
// case) or of what the file held before (a rollback recovered at start
// rewrites it), or of nothing (no file yet).
func TestParseAhead(t *testing.T) {
	const first = "default: allow\nrules:\n  - name: curl\n    exe: /usr/bin/curl\n    action: deny\n"
	const second = "default: deny\nrules: []\n"
	for _, tc := range []struct {
		name          string
		before, after string // "" before: no file when parsing starts
		rules         int
		def           engine.Action
	}{
		{"unchanged", first, first, 1, engine.ActionAllow},
		{"changed", first, second, 0, engine.ActionDeny},
		{"appeared", "", second, 0, engine.ActionDeny},
		{"refused", "rules: [", second, 0, engine.ActionDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			if tc.before != "" {
				os.WriteFile(path, []byte(tc.before), 0o644)
			}
			ahead := engine.ParseAhead(path)
			os.WriteFile(path, []byte(tc.after), 0o644)
			m := engine.NewManager(engine.ManagerConfig{Backend: enginetest.New(1), PolicyFile: path, Ahead: ahead})
			defer m.Close()
			if err := m.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if p := m.Policy(); len(p.Rules) != tc.rules || p.Default != tc.def {
				t.Fatalf("in force: %d rules, default %v; want %d, %v", len(p.Rules), p.Default, tc.rules, tc.def)
			}
		})
	}
	// A refusal found ahead is Load's refusal.
	path := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(path, []byte("default: allow\nrules:\n  - name: x\n    action: deny\n"), 0o644)
	m := engine.NewManager(engine.ManagerConfig{Backend: enginetest.New(1), PolicyFile: path, Ahead: engine.ParseAhead(path)})
	defer m.Close()
	if err := m.Load(ctx); err == nil {
		t.Fatal("Load took a rule with no selector")
	}
}
