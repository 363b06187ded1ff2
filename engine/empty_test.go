package engine_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// emptyFiles hold no policy: a daemon refuses each of them at start.
var emptyFiles = map[string]string{
	"nothing":       "",
	"blanks":        " \n\t\n",
	"comments only": "# my policy\n\n   # more later\n",
	"bare document": "---\n# nothing yet\n",
	"null":          "~\n",
	"null word":     "# nothing\nnull # yet\n",
	"null document": "--- NULL\n",
}

// TestApplyRefusesWhatStartRefuses: an apply of a file the daemon would
// refuse at its next start is refused with the same reason, and neither
// the policy in force nor the policy file changes (issue 20, item 1).
func TestApplyRefusesWhatStartRefuses(t *testing.T) {
	const good = "# mine\ndefault: allow\nrules:\n  - name: curl\n    exe: /usr/bin/curl\n    action: deny\n"
	f := newFixture(t, good)
	for name, data := range emptyFiles {
		t.Run(name, func(t *testing.T) {
			if !engine.EmptyPolicy([]byte(data)) {
				t.Fatalf("EmptyPolicy(%q) = false", data)
			}
			// The reason the daemon gives at start.
			path := filepath.Join(t.TempDir(), "policy.yaml")
			os.WriteFile(path, []byte(data), 0o644)
			m := engine.NewManager(engine.ManagerConfig{Backend: enginetest.New(1), PolicyFile: path})
			startErr := m.Load(ctx)
			if !errors.Is(startErr, engine.ErrEmptyPolicyFile) {
				t.Fatalf("start with %q: %v, want ErrEmptyPolicyFile", data, startErr)
			}
			_, err := f.m.ApplyFile(ctx, []byte(data), 0)
			if !errors.Is(err, engine.ErrEmptyPolicyFile) {
				t.Fatalf("apply of %q: %v, want ErrEmptyPolicyFile", data, err)
			}
			onDisk, _ := os.ReadFile(f.path)
			if !bytes.Equal(onDisk, []byte(good)) {
				t.Fatalf("policy file changed by a refused apply:\n%s", onDisk)
			}
			if p := f.m.Policy(); len(p.Rules) != 1 {
				t.Fatalf("policy in force changed: %+v", engine.ViewPolicy(p))
			}
		})
	}
}

// TestEmptyPolicyIsNarrow: a file that says anything at all is a policy
// (or a refusal Parse explains), not "empty".
func TestEmptyPolicyIsNarrow(t *testing.T) {
	for _, data := range []string{
		"rules: []\n",
		"# only a default\ndefault: allow\n",
		"garbage: [",
		"---\n---\ndefault: deny\n",
		"null: x\n",
		"nullish\n",
		"  # indented comment\n\t\nmode: audit\n",
	} {
		if engine.EmptyPolicy([]byte(data)) {
			t.Errorf("EmptyPolicy(%q) = true", data)
		}
	}
}
