package app

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

// TestListenerCheckAndForce drives the listener check through the CLI:
// every changing command refuses to cut a server listening now, naming the
// program and port, and --force goes through.
func TestListenerCheckAndForce(t *testing.T) {
	e := newEnv(t)
	exe := filepath.Join(t.TempDir(), "srv")
	if err := os.WriteFile(exe, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	id, _, err := engine.StatResolver{}.Identify(exe)
	if err != nil {
		t.Fatal(err)
	}
	e.b.SetListeners([]engine.Listener{{Owner: engine.Subject{Exe: id, HasExe: true, UID: 65534, GID: 65534},
		PID: 77, Comm: "srv", Exe: exe, Proto: engine.ProtoTCP, Local: netip.MustParseAddrPort("0.0.0.0:8080")}}, nil)
	policy := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(policy, []byte("default: allow\ndefault_inbound: deny\nrules: []\n"), 0o644)
	for _, args := range [][]string{
		{"deny", exe},
		{"local-only", exe},
		{"rule", "add", "--action", "deny", "--allow", "0.0.0.0/0 port 9090 tcp in", "--exe", exe},
		{"default", "--inbound", "local-only"},
		{"apply", "-f", policy},
	} {
		_, err := run(append([]string{"--socket", e.socket}, args...)...)
		if err == nil || !strings.Contains(err.Error(), exe) || !strings.Contains(err.Error(), "port 8080") ||
			!strings.Contains(err.Error(), "--force") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("exewall %s: %v; want a one-line refusal naming %s and port 8080", strings.Join(args, " "), err, exe)
		}
	}
	// Through the Go client: a 409 that errors.Is ErrWouldCut, and Forced.
	c := client.New(e.socket)
	if err := c.SetDefaultInbound(t.Context(), "deny"); !errors.Is(err, engine.ErrWouldCut) {
		t.Fatalf("client: %v", err)
	}
	if err := c.Forced().SetDefaultInbound(t.Context(), "allow"); err != nil {
		t.Fatalf("client, forced: %v", err)
	}
	// default deny alone governs outbound only: no server is cut.
	e.run(t, "default", "deny")
	if out := e.run(t, "default", "--force", "--inbound", "deny"); out != "default_inbound: deny\n" {
		t.Fatalf("default --inbound: %q", out)
	}
	if out := e.run(t, "ls"); !strings.HasPrefix(out, "default: deny, default_inbound: deny, mode: enforce\n") {
		t.Fatalf("ls:\n%s", out)
	}
	data, _ := os.ReadFile(e.policy)
	if !strings.Contains(string(data), "default_inbound: deny") {
		t.Fatalf("policy file:\n%s", data)
	}
	// Back to allow cuts nothing; then mode audit and back need --force.
	e.run(t, "default", "--inbound", "allow")
	e.run(t, "rule", "add", "--action", "deny", "--force", "--exe", exe)
	if _, err := run("--socket", e.socket, "rm", "srv"); err != nil {
		t.Fatalf("rm of the rule that cut it restores, cuts nothing: %v", err)
	}
	e.run(t, "deny", "--force", exe)
	e.run(t, "mode", "audit")
	if _, err := run("--socket", e.socket, "mode", "enforce"); err == nil {
		t.Fatal("mode enforce would cut the server again")
	}
	e.run(t, "mode", "--force", "enforce")
	e.run(t, "apply", "--force", "-f", policy)
	st, err := e.m.Status(t.Context())
	if err != nil || st.ListenersCut == 0 || st.DefaultInbound != "deny" {
		t.Fatalf("status: %+v %v", st, err)
	}
}
