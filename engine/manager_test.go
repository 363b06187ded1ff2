package engine_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

type fixture struct {
	m    *engine.Manager
	b    *enginetest.Backend
	path string
	dir  string
}

func newFixture(t *testing.T, content string, mod ...func(*engine.ManagerConfig)) *fixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "etc", "policy.yaml")
	if content != "" {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := enginetest.New(16)
	cfg := engine.ManagerConfig{Backend: b, PolicyFile: path, RollbackFile: filepath.Join(dir, "rollback.yaml")}
	for _, f := range mod {
		f(&cfg)
	}
	m := engine.NewManager(cfg)
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return &fixture{m: m, b: b, path: path, dir: dir}
}

// agree checks that the file, the manager and the backend say the same.
func (f *fixture) agree(t *testing.T) *engine.Policy {
	t.Helper()
	data, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := engine.Parse(data)
	if err != nil {
		t.Fatalf("policy file no longer parses: %v\n%s", err, data)
	}
	want := engine.ViewPolicy(f.m.Policy())
	if got := engine.ViewPolicy(onDisk); !reflect.DeepEqual(got, want) {
		t.Fatalf("file says %+v, manager %+v", got, want)
	}
	if got := engine.ViewPolicy(f.b.InForce()); !reflect.DeepEqual(got, want) {
		t.Fatalf("backend enforces %+v, manager %+v", got, want)
	}
	return onDisk
}

var ctx = context.Background()

func TestLoadWritesDefault(t *testing.T) {
	f := newFixture(t, "")
	data, err := os.ReadFile(f.path)
	if err != nil || string(data) != string(engine.DefaultPolicyFile) {
		t.Fatalf("default not written: %v %q", err, data)
	}
	f.agree(t)
}

func TestEditsPersistWithComments(t *testing.T) {
	f := newFixture(t, "# mine\ndefault: allow # keep\nrules:\n  # first\n  - name: a\n    user: \"1234\"\n    action: deny\n")
	r, err := f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/nonexistent/bin/curl"}, Action: engine.ActionDeny})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "curl" {
		t.Errorf("derived name %q", r.Name)
	}
	f.agree(t)
	// Same selector again: replaced in place, name kept.
	if r, err = f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/nonexistent/bin/curl"}, Action: engine.ActionLocalOnly, Audit: true}); err != nil || r.Name != "curl" {
		t.Fatalf("replace: %v %v", r, err)
	}
	p := f.agree(t)
	if len(p.Rules) != 2 || p.Rules[1].Action != engine.ActionLocalOnly {
		t.Fatalf("rules %+v", p.Rules)
	}
	// A name taken by another selector is refused; an unnamed one gets a suffix.
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "curl", Selector: engine.Selector{Exe: "/other/curl"}, Action: engine.ActionDeny}); err == nil {
		t.Error("duplicate name accepted")
	}
	if r, err = f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/other/curl"}, Action: engine.ActionDeny}); err != nil || r.Name != "curl-2" {
		t.Fatalf("suffix: %v %v", r, err)
	}
	if err := f.m.SetDefault(ctx, engine.ActionLocalOnly); err != nil {
		t.Fatal(err)
	}
	if err := f.m.SetMode(ctx, engine.ModeAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.RemoveRule(ctx, "/nonexistent/bin//curl"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.RemoveRule(ctx, "nope"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("remove missing: %v", err)
	}
	p = f.agree(t)
	if len(p.Rules) != 2 || p.Rules[0].Name != "a" || p.Rules[1].Name != "curl-2" {
		t.Fatalf("rules %+v", p.Rules)
	}
	data, _ := os.ReadFile(f.path)
	for _, want := range []string{"# mine", "# keep", "# first", "default: local-only", "mode: audit"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%q lost:\n%s", want, data)
		}
	}
}

func TestRefusedChangeLeavesEverything(t *testing.T) {
	f := newFixture(t, "default: deny\n")
	before, _ := os.ReadFile(f.path)
	applies := f.b.Applies()
	// Invalid: a destination the checker refuses.
	bad := engine.Rule{Name: "x", Selector: engine.Selector{Exe: "relative/path"}, Action: engine.ActionDeny}
	if _, err := f.m.AddRule(ctx, bad); err == nil {
		t.Fatal("relative exe accepted")
	}
	// Backend failure.
	f.b.FailNext(errors.New("kernel says no"))
	if _, err := f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/bin/x"}, Action: engine.ActionDeny}); err == nil {
		t.Fatal("backend failure not reported")
	}
	after, _ := os.ReadFile(f.path)
	if string(before) != string(after) || f.b.Applies() != applies {
		t.Fatalf("refused change touched the file or the kernel")
	}
	// An invalid file named by line.
	_, err := f.m.ApplyFile(ctx, []byte("default: deny\nrules:\n  - name: a\n    exe: /bin/a\n    action: nope\n"), 0)
	var pe *engine.PolicyError
	if !errors.As(err, &pe) || pe.Line != 5 {
		t.Fatalf("apply invalid: %v", err)
	}
	f.agree(t)
}

func TestApplyFileVerbatimAndRollback(t *testing.T) {
	f := newFixture(t, "default: allow\n")
	newFile := "# the new one\ndefault: deny\n"
	if _, err := f.m.ApplyFile(ctx, []byte(newFile), 0); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(f.path); string(data) != newFile {
		t.Fatalf("file = %q", data)
	}
	// Rolled back when not confirmed.
	if _, err := f.m.ApplyFile(ctx, []byte("default: local-only\n"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AddRule(ctx, engine.Rule{Selector: engine.Selector{User: "1"}, Action: engine.ActionDeny}); err == nil {
		t.Error("edit accepted while an apply is pending")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.m.Policy().Default != engine.ActionDeny && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if data, _ := os.ReadFile(f.path); string(data) != newFile {
		t.Fatalf("not rolled back: %q", data)
	}
	f.agree(t)
	if err := f.m.Confirm(); !errors.Is(err, engine.ErrNoPendingApply) {
		t.Errorf("confirm with nothing pending: %v", err)
	}
	// Kept when confirmed.
	if _, err := f.m.ApplyFile(ctx, []byte("default: local-only\n"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Confirm(); err != nil {
		t.Fatal(err)
	}
	if p := f.agree(t); p.Default != engine.ActionLocalOnly {
		t.Fatalf("confirmed apply lost: %v", p.Default)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "rollback.yaml")); !os.IsNotExist(err) {
		t.Errorf("rollback file left: %v", err)
	}
}

func TestRollbackSurvivesRestart(t *testing.T) {
	f := newFixture(t, "default: allow\n")
	if _, err := f.m.ApplyFile(ctx, []byte("default: deny\n"), time.Hour); err != nil {
		t.Fatal(err)
	}
	f.m.Close() // the daemon dies before confirming
	m2 := engine.NewManager(engine.ManagerConfig{Backend: f.b, PolicyFile: f.path, RollbackFile: filepath.Join(f.dir, "rollback.yaml")})
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if m2.Policy().Default != engine.ActionAllow {
		t.Fatalf("restart kept the unconfirmed policy")
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t, "default: allow\n")
	os.WriteFile(f.path, []byte("default: deny\n"), 0o644)
	if changed, err := f.m.Reload(ctx); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if changed, err := f.m.Reload(ctx); err != nil || changed {
		t.Fatalf("second reload: %v %v", changed, err)
	}
	os.WriteFile(f.path, []byte("default: deny\nbogus: 1\n"), 0o644)
	if _, err := f.m.Reload(ctx); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("invalid reload: %v", err)
	}
	if f.b.InForce().Default != engine.ActionDeny {
		t.Fatal("invalid file changed the policy in force")
	}
}

func TestManaged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, []byte("default: deny\n"), 0o444)
	makeReadOnly(t, dir)
	b := enginetest.New(1)
	m := engine.NewManager(engine.ManagerConfig{Backend: b, PolicyFile: path})
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var me *engine.ManagedError
	if _, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/bin/x"}, Action: engine.ActionDeny}); !errors.As(err, &me) {
		t.Fatalf("edit of a managed policy: %v", err)
	}
}

func TestViolationWindowAndSubscribers(t *testing.T) {
	f := newFixture(t, "", func(c *engine.ManagerConfig) { c.Window = 100; c.SubscriberBuffer = 4 })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.m.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()

	fast, cancelFast := f.m.Subscribe()
	defer cancelFast()
	slow, cancelSlow := f.m.Subscribe()
	defer cancelSlow()

	base := time.Now()
	for i := range 1000 {
		f.b.Emit(engine.Violation{Time: base.Add(time.Duration(i) * time.Millisecond), PID: uint32(i),
			Verdict: engine.VerdictDeny, Daddr: netip.MustParseAddr("127.0.0.1")})
		// The fast one keeps up (reads each as it comes).
		select {
		case v, ok := <-fast:
			if !ok || v.PID != uint32(i) {
				t.Fatalf("fast subscriber: %v %v", v.PID, ok)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("fast subscriber starved")
		}
	}
	// The slow one (never read) was dropped: its channel is closed after
	// at most its buffer.
	n := 0
	for range slow {
		n++
	}
	if n > 4 {
		t.Errorf("slow subscriber got %d, buffer is 4", n)
	}
	// The ring keeps the last 100; the program's first event is pinned.
	vs := f.m.Violations(time.Time{})
	if len(vs) != 101 || vs[0].PID != 0 || vs[1].PID != 900 || vs[100].PID != 999 {
		t.Fatalf("window holds %d, first %v", len(vs), vs[0].PID)
	}
	if vs := f.m.Violations(base.Add(990 * time.Millisecond)); len(vs) != 10 {
		t.Fatalf("since: %d", len(vs))
	}
}

func TestSyncAndStatus(t *testing.T) {
	f := newFixture(t, "default: deny\nmode: audit\n")
	f.b.Tamper("program detached from cgroup")
	drift, err := f.m.Sync(ctx)
	if err != nil || len(drift) != 1 || !drift[0].Repaired {
		t.Fatalf("sync: %v %v", drift, err)
	}
	f.b.SetCounters(engine.Counters{Allowed: 3, Denied: 2}, map[string]engine.Counters{"": {Denied: 2}}, 7)
	s, err := f.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Backend != "fake" || s.Default != "deny" || s.Mode != "audit" || s.Counters.Denied != 2 || s.EventsLost != 7 {
		t.Fatalf("status %+v", s)
	}
}

func TestDeriveName(t *testing.T) {
	for sel, want := range map[engine.Selector]string{
		{Exe: "/usr/bin/curl"}:                  "curl",
		{Exe: `C:\Program Files\App\app.exe`}:   "app",
		{Exe: "/opt/my app/.run"}:               "run",
		{Cgroup: "/system.slice/nginx.service"}: "nginx.service",
		{User: "nobody"}:                        "user-nobody",
		{Group: "ci"}:                           "group-ci",
		{Exe: "/bin/["}:                         "rule",
	} {
		if got := engine.DeriveName(sel); got != want {
			t.Errorf("DeriveName(%+v) = %q, want %q", sel, got, want)
		}
	}
}
