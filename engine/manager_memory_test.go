package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// TestManagerInMemory: a Manager with no policy file adds, removes, lists
// and syncs rules, applies whole policies and is never managed.
func TestManagerInMemory(t *testing.T) {
	ctx := context.Background()
	b := enginetest.New(16)
	m := engine.NewManager(engine.ManagerConfig{Backend: b, Resolver: pathResolver{"/usr/bin/curl": 1, "/usr/bin/wget": 2}})
	defer m.Close()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Managed(); err != nil {
		t.Fatalf("in-memory manager is managed: %v", err)
	}
	for _, exe := range []string{"/usr/bin/curl", "/usr/bin/wget"} {
		if _, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}); err != nil {
			t.Fatalf("add %s: %v", exe, err)
		}
	}
	if err := m.SetDefault(ctx, engine.ActionLocalOnly); err != nil {
		t.Fatal(err)
	}
	if got := names(m.Policy()); got != "curl,wget" {
		t.Fatalf("rules listed: %s", got)
	}
	if got := names(b.InForce()); got != "curl,wget" || b.InForce().Default != engine.ActionLocalOnly {
		t.Fatalf("rules in force: %s, default %s", got, b.InForce().Default)
	}
	if _, err := m.RemoveRule(ctx, "/usr/bin/curl"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RemoveRule(ctx, "curl"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("removing a removed rule: %v", err)
	}
	if got := names(m.Policy()); got != "wget" {
		t.Fatalf("after rm: %s", got)
	}
	b.Tamper("program detached")
	drift, err := m.Sync(ctx)
	if err != nil || len(drift) != 1 || !drift[0].Repaired {
		t.Fatalf("sync: %v %v", drift, err)
	}
	if got := names(b.InForce()); got != "wget" {
		t.Fatalf("after sync: %s", got)
	}
	if _, err := m.ApplyFile(ctx, []byte("default: deny\nrules: []\n"), 0); err != nil {
		t.Fatal(err)
	}
	if p := b.InForce(); len(p.Rules) != 0 || p.Default != engine.ActionDeny {
		t.Fatalf("after apply: %+v", p)
	}
	if changed, err := m.Reload(ctx); changed || err != nil {
		t.Fatalf("reload without a file: %v %v", changed, err)
	}
	st, err := m.Status(ctx)
	if err != nil || st.PolicyFile != "" || st.Managed || st.Default != "deny" {
		t.Fatalf("status: %+v %v", st, err)
	}
}

// TestManagerInitialPolicy: ManagerConfig.Policy is what an in-memory
// manager starts from.
func TestManagerInitialPolicy(t *testing.T) {
	b := enginetest.New(1)
	p := &engine.Policy{Default: engine.ActionDeny, Mode: engine.ModeAudit,
		Rules: []engine.Rule{{Name: "curl", Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionAllow}}}
	m := engine.NewManager(engine.ManagerConfig{Backend: b, Policy: p, Resolver: pathResolver{"/usr/bin/curl": 1}})
	defer m.Close()
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.InForce(); got.Default != engine.ActionDeny || got.Mode != engine.ModeAudit || names(got) != "curl" {
		t.Fatalf("in force: %+v", got)
	}
}

// TestManagerRefuser: a policy the backend refuses never reaches Apply,
// whatever the path (load, edit, apply, learning), and the refusal wraps
// ErrNotSupported.
func TestManagerRefuser(t *testing.T) {
	ctx := context.Background()
	b := enginetest.New(1)
	b.RefuseWith(func(p *engine.Policy) error {
		for _, r := range p.Rules {
			if r.User != "" {
				return errors.New("rule " + r.Name + ": user selectors cannot be enforced here") // not wrapped
			}
		}
		if p.Mode == engine.ModeAudit {
			return engine.ErrNotSupported
		}
		return nil
	})
	m := engine.NewManager(engine.ManagerConfig{Backend: b})
	defer m.Close()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	applies := b.Applies()
	_, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{User: "0"}, Action: engine.ActionDeny})
	if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), "user selectors cannot be enforced") {
		t.Fatalf("add refused rule: %v", err)
	}
	if _, err := m.ApplyFile(ctx, []byte("rules:\n  - name: u\n    user: \"0\"\n    action: deny\n"), 0); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("apply refused policy: %v", err)
	}
	if _, _, err := m.Check([]byte("mode: audit\n")); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("check refused policy: %v", err)
	}
	if _, err := m.StartLearning(ctx, 0, 1<<40); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("learning policy (mode audit) not refused: %v", err)
	}
	if b.Applies() != applies {
		t.Fatalf("a refused policy reached Apply (%d applies, want %d)", b.Applies(), applies)
	}
	if len(m.Policy().Rules) != 0 {
		t.Fatalf("policy changed: %+v", m.Policy())
	}
}

// TestManagerBackendResolver: a backend that identifies executables is
// the manager's resolver when none is given.
func TestManagerBackendResolver(t *testing.T) {
	// Two paths that do not exist, one file to the backend: only its
	// resolver sees that the second rule names the first one's executable.
	b := resolvingBackend{Backend: enginetest.New(1), pathResolver: pathResolver{"/nonexistent/a": 7, "/nonexistent/b": 7}}
	m := engine.NewManager(engine.ManagerConfig{Backend: b})
	defer m.Close()
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/nonexistent/a"}, Action: engine.ActionDeny}); err != nil {
		t.Fatal(err)
	}
	_, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/nonexistent/b"}, Action: engine.ActionDeny})
	if err == nil || !strings.Contains(err.Error(), "same executable") {
		t.Fatalf("the backend's resolver was not used: %v", err)
	}
}

type resolvingBackend struct {
	*enginetest.Backend
	pathResolver
}

func names(p *engine.Policy) string {
	var out []string
	for _, r := range p.Rules {
		out = append(out, r.Name)
	}
	return strings.Join(out, ",")
}
