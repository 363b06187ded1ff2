package engine

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// memBackend is the least Backend: it keeps what was applied.
type memBackend struct{ applied []*Policy }

func (b *memBackend) Name() string { return "mem" }
func (b *memBackend) Apply(_ context.Context, p *Policy) error {
	b.applied = append(b.applied, p.Clone())
	return nil
}
func (b *memBackend) State(context.Context) (State, error)          { return State{}, nil }
func (b *memBackend) Violations() <-chan Violation                  { return nil }
func (b *memBackend) Close() error                                  { return nil }
func (b *memBackend) Listeners(context.Context) ([]Listener, error) { return listening, nil }

var listening = []Listener{{PID: 1, Comm: "sshd", Proto: ProtoTCP, Local: netip.MustParseAddrPort("0.0.0.0:22"),
	Owner: Subject{Cgroup: "/system.slice/ssh.service", UID: 0}}}

// TestOlderDaemonRefusesDefaultInbound: the daemons before default_inbound
// (policyFields was default, mode, rules: git show ad20274:engine/parse.go)
// refuse unknown fields, so a policy with default_inbound written for a
// newer daemon is refused by an older one, naming the line, and the policy
// it enforces stays in force (at reload as at apply).
func TestOlderDaemonRefusesDefaultInbound(t *testing.T) {
	saved := policyFields
	defer func() { policyFields = saved }()
	policyFields = slices.DeleteFunc(slices.Clone(saved), func(f string) bool { return f == "default_inbound" || f == "resolvers" })

	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	old := "default: deny\nrules: []\n"
	os.WriteFile(path, []byte(old), 0o644)
	b := &memBackend{}
	m := NewManager(ManagerConfig{Backend: b, PolicyFile: path})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := []byte("default: deny\ndefault_inbound: deny\nrules: []\n")
	_, err := m.ApplyFile(context.Background(), next, 0)
	if err == nil || !strings.Contains(err.Error(), `line 2: unknown field "default_inbound"`) {
		t.Fatalf("older daemon's apply: %v", err)
	}
	os.WriteFile(path, next, 0o644)
	if changed, err := m.Reload(context.Background()); err == nil || changed {
		t.Fatalf("older daemon's reload: %v %v", changed, err)
	}
	if len(b.applied) != 1 || b.applied[0].Default != ActionDeny || b.applied[0].DefaultInbound != ActionAllow {
		t.Fatalf("the previous policy must stay in force: %+v", b.applied)
	}
	st, _ := m.Status(context.Background())
	if !strings.Contains(st.PolicyFileError, "default_inbound") {
		t.Fatalf("status must say why the file is not in force: %+v", st)
	}
}

// TestDefaultDenyKeepsServers: a host whose policy already says `default:
// deny` (no default_inbound) keeps its servers reachable after the
// upgrade: the default governs what unlisted programs open, not what they
// accept, so loading it cuts no listener.
func TestDefaultDenyKeepsServers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, []byte("default: deny\nmode: enforce\nrules: []\n"), 0o644)
	m := NewManager(ManagerConfig{Backend: &memBackend{}, PolicyFile: path})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Status(context.Background())
	if st.ListenersCut != 0 || st.DefaultInbound != "allow" {
		t.Fatalf("an upgraded default: deny host: %+v", st)
	}
	ev, _ := NewEvaluator(m.Policy(), StatResolver{}, nil)
	peer := netip.MustParseAddr("198.51.100.7")
	if d := ev.Judge(listening[0].Owner, Attempt{Dir: DirIn, Addr: peer, Port: 22, Proto: ProtoTCP}); d.Verdict != VerdictAllow {
		t.Fatalf("sshd accepting from %s under default: deny: %+v", peer, d)
	}
	if d := ev.Judge(listening[0].Owner, Attempt{Dir: DirOut, Addr: peer, Port: 22, Proto: ProtoTCP}); d.Verdict != VerdictDeny {
		t.Fatalf("sshd connecting out under default: deny: %+v", d)
	}
	// Adding default_inbound: deny later is what cuts it, and is refused.
	if err := m.SetDefaultInbound(context.Background(), ActionDeny); err == nil || !strings.Contains(err.Error(), "sshd") {
		t.Fatalf("default_inbound deny with sshd listening: %v", err)
	}
}
