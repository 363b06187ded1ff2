package engine_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// server makes an executable file and a listener of a process running it.
func server(t *testing.T, dir, name, local string, proto engine.Proto) (string, engine.Listener) {
	t.Helper()
	exe := filepath.Join(dir, name)
	if _, err := os.Stat(exe); err != nil {
		if err := os.WriteFile(exe, []byte("\x7fELF not really"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id, ok, err := engine.StatResolver{}.Identify(exe)
	if err != nil || !ok {
		t.Fatal(err)
	}
	return exe, engine.Listener{Owner: engine.Subject{Exe: id, HasExe: true, Cgroup: "/x", UID: 65534, GID: 65534},
		PID: 4242, Comm: name, Exe: exe, Proto: proto, Local: netip.MustParseAddrPort(local)}
}

func TestListenerCheckRefusesNamesAndForce(t *testing.T) {
	f := newFixture(t, "# mine\ndefault: allow\nrules: []\n")
	exe, l := server(t, f.dir, "srv", "0.0.0.0:8080", engine.ProtoTCP)
	_, lo := server(t, f.dir, "srv", "127.0.0.1:9000", engine.ProtoTCP)
	f.b.SetListeners([]engine.Listener{l, lo}, nil)
	applied := f.b.Applies()

	_, err := f.m.AddRule(ctx, engine.Rule{Name: "srv", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny})
	var ce *engine.CutError
	if !errors.As(err, &ce) || !errors.Is(err, engine.ErrWouldCut) {
		t.Fatalf("deny of a listening server: %v, want a *CutError", err)
	}
	if len(ce.Cuts) != 1 || !strings.Contains(err.Error(), exe) || !strings.Contains(err.Error(), "port 8080") ||
		!strings.Contains(err.Error(), `rule "srv"`) {
		t.Fatalf("the refusal must name the program, port and rule (only the non-loopback one): %v", err)
	}
	if f.b.Applies() != applied || len(f.m.Policy().Rules) != 0 {
		t.Fatal("a refused change reached the backend")
	}
	if _, err := f.m.AddRule(ctx, engine.Rule{Name: "srv", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}, engine.Force()); err != nil {
		t.Fatalf("--force: %v", err)
	}
	f.agree(t)
	st, _ := f.m.Status(ctx)
	if st.ListenersCut != 1 || st.LastListenersCut == nil || st.LastListenersCut.Cuts[0].Local.Port() != 8080 {
		t.Fatalf("a forced cut is reported in status: %+v", st)
	}
}

func TestListenerCheckInboundEntriesAndDefaults(t *testing.T) {
	f := newFixture(t, "# keep me\ndefault: allow # and me\nmode: enforce\nrules: []\n")
	exe, l80 := server(t, f.dir, "web", "[::]:80", engine.ProtoTCP)
	_, l53 := server(t, f.dir, "web", "192.0.2.10:53", engine.ProtoUDP)
	f.b.SetListeners([]engine.Listener{l80, l53}, nil)

	// default governs inbound only through default_inbound.
	if err := f.m.SetDefault(ctx, engine.ActionDeny); err != nil {
		t.Fatalf("default deny without default_inbound cuts no server: %v", err)
	}
	err := f.m.SetDefaultInbound(ctx, engine.ActionLocalOnly)
	var ce *engine.CutError
	if !errors.As(err, &ce) || len(ce.Cuts) != 2 || !strings.Contains(err.Error(), "default_inbound") {
		t.Fatalf("default_inbound local-only must cut both: %v", err)
	}
	// A rule allowing exactly the ports they listen on keeps them.
	r := engine.Rule{Name: "web", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}
	for _, s := range []string{"0.0.0.0/0 port 80 tcp in", "::/0 port 80 tcp in", "0.0.0.0/0 port 53 udp in"} {
		d, err := engine.ParseDest(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Allow = append(r.Allow, d)
	}
	if _, err := f.m.AddRule(ctx, r); err != nil {
		t.Fatalf("a rule allowing the ports in: %v", err)
	}
	if err := f.m.SetDefaultInbound(ctx, engine.ActionDeny); err != nil {
		t.Fatalf("default_inbound deny with the server's rule: %v", err)
	}
	p := f.agree(t)
	if p.DefaultInbound != engine.ActionDeny || !p.InboundSet {
		t.Fatalf("default_inbound not persisted: %+v", p)
	}
	data, _ := os.ReadFile(f.path)
	if !strings.Contains(string(data), "# keep me") || !strings.Contains(string(data), "# and me") ||
		!strings.Contains(string(data), "default_inbound: deny") {
		t.Fatalf("the file keeps comments and says default_inbound:\n%s", data)
	}
	// Narrowing the v6 entry to one network cuts port 80 only.
	r.Allow[1], _ = engine.ParseDest("2001:db8::/32 port 80 tcp in")
	_, err = f.m.AddRule(ctx, r)
	if !errors.As(err, &ce) || len(ce.Cuts) != 1 || ce.Cuts[0].Local.Port() != 80 || !ce.Cuts[0].Peer.Is6() {
		t.Fatalf("narrowing ::/0 to 2001:db8::/32: %v", err)
	}
	// In audit mode nothing is cut.
	if err := f.m.SetMode(ctx, engine.ModeAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AddRule(ctx, r); err != nil {
		t.Fatalf("audit mode cuts nothing: %v", err)
	}
	// Back to enforce would now cut.
	if err := f.m.SetMode(ctx, engine.ModeEnforce); !errors.As(err, &ce) {
		t.Fatalf("mode enforce cuts: %v", err)
	}
	if err := f.m.SetMode(ctx, engine.ModeEnforce, engine.Force()); err != nil {
		t.Fatal(err)
	}
}

func TestListenerCheckApplyAndReload(t *testing.T) {
	f := newFixture(t, "default: deny\nrules: []\n")
	_, l := server(t, f.dir, "srv", "10.0.0.5:22", engine.ProtoTCP)
	f.b.SetListeners([]engine.Listener{l}, nil)
	next := []byte("default: deny\ndefault_inbound: local-only\nrules: []\n")
	if _, err := f.m.ApplyFile(ctx, next, 0); !errors.Is(err, engine.ErrWouldCut) {
		t.Fatalf("apply: %v", err)
	}
	if _, err := f.m.ApplyFile(ctx, next, 0, engine.Force()); err != nil {
		t.Fatal(err)
	}
	// A reload (or a managed file) is applied and reported, never refused.
	if err := os.WriteFile(f.path, []byte("default: deny\ndefault_inbound: deny\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := f.m.Status(ctx)
	if changed, err := f.m.Reload(ctx); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	st, _ := f.m.Status(ctx)
	if st.ListenersCut != before.ListenersCut+1 || !strings.Contains(st.LastListenersCut.Why, "reload") || st.DefaultInbound != "deny" {
		t.Fatalf("reload must report the cut: %+v", st)
	}
	// A listing failure refuses unless forced.
	f.b.SetListeners(nil, errors.New("no socket tables"))
	if err := f.m.SetDefaultInbound(ctx, engine.ActionAllow); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("listing failure: %v", err)
	}
	if err := f.m.SetDefaultInbound(ctx, engine.ActionAllow, engine.Force()); err != nil {
		t.Fatal(err)
	}
}

func TestWouldCutFamilies(t *testing.T) {
	dir := t.TempDir()
	exe, l4 := server(t, dir, "s", "192.0.2.1:25", engine.ProtoTCP)
	_, l6 := server(t, dir, "s", "[2001:db8::1]:25", engine.ProtoTCP)
	old, _ := engine.Parse([]byte("rules: []\n"))
	next, err := engine.Parse([]byte("rules:\n  - name: s\n    exe: " + exe + "\n    action: deny\n    allow: [\"0.0.0.0/0 port 25 in\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cuts, err := engine.WouldCut(old, next, []engine.Listener{l4, l6}, engine.StatResolver{}, nil)
	if err != nil || len(cuts) != 1 || cuts[0].Local != l6.Local {
		t.Fatalf("only the IPv6 socket loses peers: %+v %v", cuts, err)
	}
}
