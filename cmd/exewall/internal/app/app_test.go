package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/api"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

type env struct {
	socket string
	policy string
	b      *enginetest.Backend
	m      *engine.Manager
}

// newEnv serves the API over a fake backend on a temporary socket,
// accepting the test's own uid (tests need no root).
func newEnv(t *testing.T) *env {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the daemon's socket tests need Unix credentials")
	}
	dir := t.TempDir()
	e := &env{socket: filepath.Join(dir, "s.sock"), policy: filepath.Join(dir, "policy.yaml"), b: enginetest.New(64)}
	e.m = engine.NewManager(engine.ManagerConfig{Backend: e.b, PolicyFile: e.policy})
	if err := e.m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := platform.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { api.Serve(ctx, l, api.Options{Manager: e.m, AllowUID: os.Getuid()}); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// run runs the CLI and returns stdout and the error main would print.
func run(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := NewWithWriters(&out, &errOut).Run(append([]string{"exewall"}, args...))
	return out.String(), err
}

func (e *env) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(append([]string{"--socket", e.socket}, args...)...)
	if err != nil {
		t.Fatalf("exewall %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"help", "nosuchcommand"},
		{"rule", "nosuch"},
		{"deny"},
		{"deny", "/bin/a", "/bin/b"},
		{"deny", "--bogus", "/bin/a"},
		{"deny", "/bin/a", "--audit"},
		{"rm"},
		{"default", "maybe"},
		{"mode", "loud"},
		{"apply"},
		{"rule", "add", "--exe", "/bin/a"},
		{"rule", "add", "--action", "deny"},
		{"rule", "add", "--action", "deny", "--exe", "/bin/a", "--user", "x"},
		{"rule", "add", "--action", "deny", "--exe", "/bin/a", "--allow", "10.0.0.0/8 port 80,443"},
		{"violations", "--since", "yesterday"},
		{"ls", "extra"},
		{"--nosuchflag", "ls"},
		{"service", "restart"},
		{"service", "install", "extra"},
		{"service", "uninstall", "--bogus"},
	} {
		out, err := run(append([]string{"--socket", "/nonexistent/s"}, args...)...)
		if err == nil {
			t.Errorf("exewall %v: no error", args)
			continue
		}
		if strings.Contains(err.Error(), "\n") || out != "" {
			t.Errorf("exewall %v: not one line: %q, stdout %q", args, err, out)
		}
		if strings.Contains(err.Error(), "no daemon") {
			t.Errorf("exewall %v: usage error reached the daemon: %v", args, err)
		}
	}
}

func TestServiceCommands(t *testing.T) {
	var service *cli.Command
	for _, c := range New().Commands {
		if c.Name == "service" {
			service = c
		}
	}
	if service == nil {
		t.Fatal("no service command")
	}
	var names []string
	for _, c := range service.Subcommands {
		if c.Name != "help" {
			names = append(names, c.Name)
		}
	}
	if !reflect.DeepEqual(names, []string{"install", "uninstall"}) {
		t.Errorf("service subcommands %v", names)
	}
	out, err := run("service")
	if err != nil || !strings.Contains(out, "install") || !strings.Contains(out, "uninstall") {
		t.Errorf("exewall service: %v\n%s", err, out)
	}
}

func TestFlagAfterArgumentReported(t *testing.T) {
	_, err := run("--socket", "/nonexistent/s", "deny", "/usr/bin/curl", "--audit")
	if err == nil || !strings.Contains(err.Error(), "--audit") {
		t.Fatalf("got %v", err)
	}
}

func TestHoistSocket(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"x", "ls", "--socket", "/s"}, []string{"x", "--socket", "/s", "ls"}},
		{[]string{"x", "--socket=/s", "ls"}, []string{"x", "--socket=/s", "ls"}},
		{[]string{"x", "deny", "/bin/a", "--socket", "/s"}, []string{"x", "--socket", "/s", "deny", "/bin/a"}},
		{[]string{"x", "rm", "--", "--socket"}, []string{"x", "rm", "--", "--socket"}},
	} {
		if got := hoistSocket(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("hoistSocket(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSocketBeforeAfterAndEnv(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"--socket", e.socket, "ls", "--json"},
		{"ls", "--socket", e.socket, "--json"},
		{"ls", "--json", "--socket=" + e.socket},
	} {
		if _, err := run(args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	t.Setenv("EXEWALL_SOCKET", e.socket)
	if _, err := run("ls"); err != nil {
		t.Errorf("EXEWALL_SOCKET: %v", err)
	}
}

func TestRuleCommandsAndLs(t *testing.T) {
	e := newEnv(t)
	e.run(t, "deny", "/usr/bin/curl")
	e.run(t, "local-only", "--name", "browser", "--audit", "/usr/lib/firefox/firefox")
	// A comma inside a destination is not a separator: refused whole.
	if _, err := run("--socket", e.socket, "rule", "add", "--action", "deny", "--allow", "203.0.113.0/24 port 443 tcp,udp", "--exe", "/usr/bin/rclone"); err == nil {
		t.Error("comma-joined destinations accepted")
	}
	e.run(t, "rule", "add", "--name", "backup", "--action", "deny", "--allow", "203.0.113.0/24 port 443 tcp",
		"--allow", "2001:db8::/32 port 443", "--exe", "/usr/bin/rclone")
	e.run(t, "rule", "add", "--action", "local-only", "--cgroup", "/system.slice/nginx.service")
	e.run(t, "default", "local-only")
	e.run(t, "mode", "audit")
	var rules []engine.RuleView
	if err := json.Unmarshal([]byte(e.run(t, "ls", "--json")), &rules); err != nil {
		t.Fatal(err)
	}
	want := []engine.RuleView{
		{Name: "curl", Exe: "/usr/bin/curl", Action: "deny"},
		{Name: "browser", Exe: "/usr/lib/firefox/firefox", Action: "local-only", Audit: true},
		{Name: "backup", Exe: "/usr/bin/rclone", Action: "deny", Allow: []string{"203.0.113.0/24 port 443 tcp", "2001:db8::/32 port 443"}},
		{Name: "nginx.service", Cgroup: "/system.slice/nginx.service", Action: "local-only"},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Fatalf("ls --json = %+v\nwant %+v", rules, want)
	}
	// The file says the same.
	data, _ := os.ReadFile(e.policy)
	p, err := engine.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if v := engine.ViewPolicy(p); !reflect.DeepEqual(v.Rules, want) || v.Default != "local-only" || v.Mode != "audit" {
		t.Fatalf("file = %+v", v)
	}
	e.run(t, "rm", "/usr/bin/curl")
	e.run(t, "rm", "browser")
	if _, err := run("--socket", e.socket, "rm", "browser"); err == nil {
		t.Error("rm of a missing rule succeeded")
	}
	out := e.run(t, "ls")
	if !strings.Contains(out, "backup") || strings.Contains(out, "curl") {
		t.Errorf("ls:\n%s", out)
	}
	if out := e.run(t, "ls", "--json"); strings.TrimSpace(out) == "null" {
		t.Error("ls --json printed null")
	}
}

func TestApplyInvalidNamesLine(t *testing.T) {
	e := newEnv(t)
	e.run(t, "deny", "/usr/bin/curl")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("default: deny\nrules:\n  - name: x\n    exe: /bin/x\n    action: deny\n    allow: [10.0.0.0/33]\n"), 0o644)
	_, err := run("--socket", e.socket, "apply", "-f", bad)
	if err == nil || !strings.Contains(err.Error(), "line 6") {
		t.Fatalf("apply invalid: %v", err)
	}
	if p := e.m.Policy(); p.Default != engine.ActionAllow || len(p.Rules) != 1 {
		t.Fatalf("invalid apply changed the policy: %+v", p)
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte("# mine\ndefault: deny\n"), 0o644)
	e.run(t, "apply", "-f", good)
	if data, _ := os.ReadFile(e.policy); string(data) != "# mine\ndefault: deny\n" {
		t.Fatalf("policy file = %q", data)
	}
	out := e.run(t, "apply", "--confirm-within", "1h", "-f", good)
	if !strings.Contains(out, "exewall confirm") {
		t.Errorf("apply --confirm-within did not say how to confirm:\n%s", out)
	}
	e.run(t, "confirm")
	if _, err := run("--socket", e.socket, "confirm"); err == nil {
		t.Error("second confirm accepted")
	}
}

func TestStatusAndViolationsJSON(t *testing.T) {
	e := newEnv(t)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.m.Run(runCtx)
	var st map[string]any
	if err := json.Unmarshal([]byte(e.run(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"backend", "cgroup", "mode", "default", "rules", "counters", "events_lost", "uptime_seconds", "hooks", "rule_counters"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	c := st["counters"].(map[string]any)
	for _, k := range []string{"allowed", "denied", "audited"} {
		if _, ok := c[k]; !ok {
			t.Errorf("counters lack %q", k)
		}
	}
	// A violation shows up with the contract's fields.
	v := engine.Violation{PID: 7, UID: 1000, Comm: "curl", Exe: "/usr/bin/curl", Rule: "curl", Verdict: engine.VerdictDeny,
		Proto: "tcp", Family: "ipv4", Dport: 443}
	v.Time = v.Time.Add(1)
	e.b.Emit(v)
	var line map[string]any
	for i := 0; i < 100 && line == nil; i++ {
		out := e.run(t, "violations", "--json")
		if out != "" {
			if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"time", "pid", "uid", "comm", "exe", "rule", "verdict", "proto", "family", "daddr", "dport"} {
		if _, ok := line[k]; !ok {
			t.Errorf("violation lacks %q: %v", k, line)
		}
	}
}

func TestRefusedPeer(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix sockets")
	}
	dir := t.TempDir()
	b := enginetest.New(1)
	m := engine.NewManager(engine.ManagerConfig{Backend: b, PolicyFile: filepath.Join(dir, "p.yaml")})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := platform.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go api.Serve(ctx, l, api.Options{Manager: m, AllowUID: os.Getuid() + 1})
	applies := b.Applies()
	_, err = run("--socket", sock, "deny", "/usr/bin/curl")
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("other uid: %v", err)
	}
	if b.Applies() != applies {
		t.Fatal("a refused caller changed the policy")
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v %v", fi.Mode(), err)
	}
}
