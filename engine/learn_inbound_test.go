package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestLearningRecordsInbound: `direction: in` attempts become "in" entries,
// so the learned policy applied with default_inbound: deny keeps the
// servers that ran reachable, and nothing more of what they accepted.
func TestLearningRecordsInbound(t *testing.T) {
	f := newFixture(t, "default: allow\ndefault_inbound: allow\nrules: []\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	if _, err := f.m.StartLearning(ctx, time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	if lp := f.b.InForce(); lp.DefaultInbound != engine.ActionDeny || lp.Mode != engine.ModeAudit {
		t.Fatalf("learning must audit inbound too: %+v", lp)
	}
	dir := t.TempDir()
	sshd, web, lan := filepath.Join(dir, "sshd"), filepath.Join(dir, "web"), filepath.Join(dir, "lan")
	for _, p := range []string{sshd, web, lan} {
		os.WriteFile(p, []byte("\x7fELF"), 0o755)
	}
	now := time.Now()
	in := func(exe, peer string, port uint16, proto string) engine.Violation {
		return engine.Violation{Time: now, Exe: exe, Comm: filepath.Base(exe), Verdict: engine.VerdictAudit, Proto: proto,
			Daddr: netip.MustParseAddr(peer), Dport: port, Direction: "in"}
	}
	f.b.Emit(in(sshd, "198.51.100.9", 22, "tcp"))
	f.b.Emit(in(sshd, "::ffff:203.0.113.4", 22, "tcp"))
	f.b.Emit(engine.Violation{Time: now, Exe: web, Comm: "web", Verdict: engine.VerdictAudit, Proto: "tcp",
		Daddr: netip.MustParseAddr("203.0.113.80"), Dport: 443})
	f.b.Emit(in(web, "2001:db8::5", 8443, "tcp"))
	f.b.Emit(in(web, "198.51.100.3", 5353, "udp"))
	f.b.Emit(in(lan, "10.0.0.8", 9000, "tcp"))
	waitFor(t, "6 attempts", func() bool { r, _ := f.m.LearnStatus(); return r.Events == 6 })
	r, err := f.m.StopLearning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r.Policy)
	p, err := engine.Parse([]byte(r.Policy))
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultInbound != engine.ActionAllow || !p.InboundSet {
		t.Fatalf("default_inbound of the policy before learning is kept: %+v", p)
	}
	rules := map[string]string{}
	for _, rv := range engine.ViewPolicy(p).Rules {
		rules[rv.Name] = rv.Action + " " + strings.Join(rv.Allow, "; ")
	}
	want := map[string]string{
		"sshd": "local-only 0.0.0.0/0 port 22 tcp in; ::/0 port 22 tcp in",
		"web":  "deny 203.0.113.80/32 port 443 tcp; 0.0.0.0/0 port 5353 udp in; ::/0 port 5353 udp in; 0.0.0.0/0 port 8443 tcp in; ::/0 port 8443 tcp in",
		"lan":  "local-only ",
	}
	if fmt.Sprint(rules) != fmt.Sprint(want) {
		t.Fatalf("learned rules:\n got %v\nwant %v", rules, want)
	}
	if !strings.Contains(r.Policy, "accepted 198.51.100.9 on local port 22/tcp") {
		t.Errorf("the comment lists what was accepted:\n%s", r.Policy)
	}

	// Applied with default_inbound: deny, every server stays reachable on
	// the ports it served, and only there.
	p.DefaultInbound = engine.ActionDeny
	ev, err := engine.NewEvaluator(p, engine.StatResolver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := func(path string) engine.Subject {
		fid, _, _ := engine.StatResolver{}.Identify(path)
		return engine.Subject{Exe: fid, HasExe: true}
	}
	judge := func(exe, peer string, port uint16, proto engine.Proto) engine.Verdict {
		return ev.Judge(id(exe), engine.Attempt{Dir: engine.DirIn, Addr: netip.MustParseAddr(peer), Port: port, Proto: proto}).Verdict
	}
	for _, c := range []struct {
		exe, peer string
		port      uint16
		proto     engine.Proto
		want      engine.Verdict
	}{
		{sshd, "192.0.2.200", 22, engine.ProtoTCP, engine.VerdictAllow},
		{sshd, "2001:db8:1::1", 22, engine.ProtoTCP, engine.VerdictAllow},
		{sshd, "192.0.2.200", 2222, engine.ProtoTCP, engine.VerdictDeny},
		{web, "192.0.2.1", 8443, engine.ProtoTCP, engine.VerdictAllow},
		{web, "192.0.2.1", 5353, engine.ProtoUDP, engine.VerdictAllow},
		{web, "192.0.2.1", 5353, engine.ProtoTCP, engine.VerdictDeny},
		{lan, "10.9.9.9", 9000, engine.ProtoTCP, engine.VerdictAllow},
		{lan, "192.0.2.1", 9000, engine.ProtoTCP, engine.VerdictDeny},
	} {
		if got := judge(c.exe, c.peer, c.port, c.proto); got != c.want {
			t.Errorf("%s accepting %s on %d/%s: %s, want %s", filepath.Base(c.exe), c.peer, c.port, c.proto, got, c.want)
		}
	}
}

// TestLearningWithoutInbound: a backend that does not judge inbound still
// learns what programs open.
func TestLearningWithoutInbound(t *testing.T) {
	f := newFixture(t, "rules: []\n")
	f.b.RefuseWith(func(p *engine.Policy) error {
		if p.HasInbound() {
			return fmt.Errorf("inbound: %w", engine.ErrNotSupported)
		}
		return nil
	})
	if _, err := f.m.StartLearning(context.Background(), time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	if lp := f.b.InForce(); lp.HasInbound() || lp.Mode != engine.ModeAudit || lp.Default != engine.ActionDeny {
		t.Fatalf("fallback learning policy: %+v", lp)
	}
	if _, err := f.m.StopLearning(context.Background()); err != nil && !errors.Is(err, engine.ErrNoLearning) {
		t.Fatal(err)
	}
}
