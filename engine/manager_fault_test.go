package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// TestPolicyFileFaults: a policy file deleted, emptied (truncated) or
// corrupted under a running daemon never changes the policy in force;
// Status says why the file is not in force; a later valid file is
// followed; a deleted file is written back so a restart loses nothing.
func TestPolicyFileFaults(t *testing.T) {
	const good = "# mine\ndefault: deny\nrules:\n  - name: curl\n    exe: /usr/bin/curl\n    action: deny\n"
	f := newFixture(t, good)
	inForce := func() *engine.Policy { return f.b.InForce() }
	wantStatusErr := func(sub string) {
		t.Helper()
		st, err := f.m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sub == "" && st.PolicyFileError != "" || !strings.Contains(st.PolicyFileError, sub) {
			t.Fatalf("status policy_file_error = %q, want it to say %q", st.PolicyFileError, sub)
		}
	}
	wantKept := func() {
		t.Helper()
		if p := inForce(); p.Default != engine.ActionDeny || len(p.Rules) != 1 {
			t.Fatalf("policy in force changed: %+v", engine.ViewPolicy(p))
		}
	}

	t.Run("deleted: kept and written back", func(t *testing.T) {
		os.Remove(f.path)
		if _, err := f.m.Reload(ctx); err != nil {
			t.Fatalf("reload of a deleted file: %v", err)
		}
		wantKept()
		if data, err := os.ReadFile(f.path); err != nil || string(data) != good {
			t.Fatalf("deleted file not written back: %v %q", err, data)
		}
		wantStatusErr("")
	})

	t.Run("deleted with its directory: kept, reported", func(t *testing.T) {
		os.RemoveAll(filepath.Dir(f.path))
		if _, err := f.m.Reload(ctx); err == nil {
			t.Fatal("reload without the directory succeeded")
		}
		wantKept()
		wantStatusErr("was deleted")
		wantStatusErr("last good policy, 1 rules, stays in force")
		os.MkdirAll(filepath.Dir(f.path), 0o755)
		os.WriteFile(f.path, []byte(good), 0o644)
		if _, err := f.m.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		wantStatusErr("")
	})

	for _, tc := range []struct{ name, data, says string }{
		{"truncated to nothing", "", "empty"},
		{"truncated to blanks", "\n  \n", "empty"},
		{"truncated mid-rule", good[:len(good)-9], "line 6"},
		{"corrupted", "\x00\xff\xfe garbage: [", "invalid yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(f.path, []byte(tc.data), 0o644)
			_, err := f.m.Reload(ctx)
			if err == nil {
				t.Fatal("reload accepted it")
			}
			if tc.says == "empty" && !errors.Is(err, engine.ErrEmptyPolicyFile) {
				t.Fatalf("err %v", err)
			}
			wantKept()
			wantStatusErr(tc.says)
			// A CLI edit meanwhile starts from the policy in force, not
			// the broken file, and writes a good file back.
			if _, err := f.m.AddRule(ctx, engine.Rule{Name: "wget", Selector: engine.Selector{Exe: "/usr/bin/wget"}, Action: engine.ActionDeny}); err != nil {
				t.Fatal(err)
			}
			f.agree(t)
			wantStatusErr("")
			if _, err := f.m.RemoveRule(ctx, "wget"); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(f.path)
			if !bytes.HasPrefix(data, []byte("# mine\n")) {
				t.Fatalf("the user's comments were lost:\n%s", data)
			}
		})
	}

	t.Run("later valid file followed", func(t *testing.T) {
		os.WriteFile(f.path, []byte("garbage: ["), 0o644)
		f.m.Reload(ctx)
		os.WriteFile(f.path, []byte("default: allow\nrules: []\n"), 0o644)
		if changed, err := f.m.Reload(ctx); err != nil || !changed {
			t.Fatalf("valid file not followed: %v %v", changed, err)
		}
		if p := inForce(); p.Default != engine.ActionAllow || len(p.Rules) != 0 {
			t.Fatalf("in force %+v", engine.ViewPolicy(p))
		}
		wantStatusErr("")
	})
}

func TestLoadRefusesEmptyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, nil, 0o644)
	m := engine.NewManager(engine.ManagerConfig{Backend: enginetest.New(1), PolicyFile: path})
	if err := m.Load(ctx); !errors.Is(err, engine.ErrEmptyPolicyFile) {
		t.Fatalf("load of an empty file: %v", err)
	}
}

// TestFailedApplyLeavesFile: the new file is prepared while a change is
// put in force; when the apply fails the policy file is as it was and no
// temporary file is left beside it.
func TestFailedApplyLeavesFile(t *testing.T) {
	const good = "# mine\ndefault: deny\nrules:\n  - name: curl\n    exe: /usr/bin/curl\n    action: deny\n"
	f := newFixture(t, good)
	f.b.FailNext(errors.New("kernel said no"))
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "wget", Selector: engine.Selector{Exe: "/usr/bin/wget"}, Action: engine.ActionDeny}); err == nil {
		t.Fatal("change applied through a failing backend")
	}
	if data, err := os.ReadFile(f.path); err != nil || string(data) != good {
		t.Fatalf("policy file after a failed apply: %v %q", err, data)
	}
	entries, err := os.ReadDir(filepath.Dir(f.path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(f.path) {
			t.Errorf("left beside the policy file: %s", e.Name())
		}
	}
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "wget", Selector: engine.Selector{Exe: "/usr/bin/wget"}, Action: engine.ActionDeny}); err != nil {
		t.Fatal(err)
	}
	f.agree(t)
}

// TestLargePolicyFileFaults: a policy file large enough that the daemon
// keeps its text compressed (policytext.go) is still written back whole
// when deleted, and an edit made while it is truncated on disk still
// starts from it, comments and all.
func TestLargePolicyFileFaults(t *testing.T) {
	var b strings.Builder
	b.WriteString("# mine\ndefault: deny\nrules:\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "  # rule %d\n  - name: r%04d\n    cgroup: /exewall-test/c%04d\n    action: deny\n", i, i, i)
	}
	good := b.String()
	if len(good) < 100<<10 {
		t.Fatalf("the file is only %d bytes: it is not kept compressed", len(good))
	}
	f := newFixture(t, good)

	os.Remove(f.path)
	if _, err := f.m.Reload(ctx); err != nil {
		t.Fatalf("reload of a deleted file: %v", err)
	}
	if data, err := os.ReadFile(f.path); err != nil || string(data) != good {
		t.Fatalf("deleted file not written back as it was: %v (%d bytes of %d)", err, len(data), len(good))
	}

	os.WriteFile(f.path, nil, 0o644)
	if _, err := f.m.Reload(ctx); !errors.Is(err, engine.ErrEmptyPolicyFile) {
		t.Fatalf("reload of an emptied file: %v", err)
	}
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "wget", Selector: engine.Selector{Exe: "/usr/bin/wget"}, Action: engine.ActionDeny}); err != nil {
		t.Fatal(err)
	}
	f.agree(t)
	data, _ := os.ReadFile(f.path)
	if !bytes.HasPrefix(data, []byte(good)) {
		t.Fatalf("the file lost what it said before the edit:\n%.300s", data)
	}
}
