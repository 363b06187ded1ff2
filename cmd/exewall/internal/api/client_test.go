//go:build linux

package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

// TestClientCalls drives every call of the public client against the real
// server, in front of a manager on the in-memory backend.
func TestClientCalls(t *testing.T) {
	f := newAPIFixture(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	c := client.New(f.socket)
	status := func(err error) int {
		var re *client.Error
		if errors.As(err, &re) {
			return re.Status
		}
		return 0
	}

	if p, err := c.Policy(ctx); err != nil || p.Default != "allow" || len(p.Rules) != 1 {
		t.Fatalf("policy: %+v %v", p, err)
	}
	r, err := c.AddRule(ctx, engine.RuleView{Exe: "/usr/bin/wget", Action: "local-only"})
	if err != nil || r.Name != "wget" {
		t.Fatalf("add: %+v %v", r, err)
	}
	if rules, err := c.Rules(ctx); err != nil || len(rules) != 2 || rules[1].Name != "wget" {
		t.Fatalf("rules: %+v %v", rules, err)
	}
	if p, err := c.PolicyFor(ctx, "/usr//bin/wget"); err != nil || len(p.Rules) != 1 || p.Rules[0].Name != "wget" || p.Default != "allow" {
		t.Fatalf("policy for wget: %+v %v", p, err)
	}
	if p, err := c.PolicyFor(ctx, "/usr/bin/nothere"); err != nil || len(p.Rules) != 0 {
		t.Fatalf("policy for an exe no rule names: %+v %v", p, err)
	}
	if _, err := c.RemoveRule(ctx, "wget"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveRule(ctx, "wget"); status(err) != http.StatusNotFound {
		t.Fatalf("remove twice: %v", err)
	}
	if err := c.SetDefault(ctx, "local-only"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMode(ctx, "maybe"); status(err) != http.StatusBadRequest {
		t.Fatalf("bad mode: %v", err)
	}
	if err := c.SetMode(ctx, "audit"); err != nil {
		t.Fatal(err)
	}

	ch, err := c.Diff(ctx, []byte("default: deny\nrules: []\n"))
	if err != nil || ch.Default == nil || ch.Default[1] != "deny" || len(ch.Removed) != 1 {
		t.Fatalf("diff: %+v %v", ch, err)
	}
	var re *client.Error
	if _, err := c.Diff(ctx, []byte("default: allow\nrules:\n  - name: x\n    action: deny\n")); !errors.As(err, &re) || re.Line == 0 {
		t.Fatalf("diff of an invalid policy: %v", err)
	}
	if f.b.Applies() == 0 || f.m.Policy().Default != engine.ActionLocalOnly {
		t.Fatal("diff changed the policy")
	}

	resp, err := c.Apply(ctx, []byte("default: deny\nrules: []\n"), time.Hour)
	if err != nil || resp.Rules != 0 || resp.ConfirmDeadline == nil {
		t.Fatalf("apply: %+v %v", resp, err)
	}
	if err := c.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Confirm(ctx); status(err) != http.StatusConflict {
		t.Fatalf("second confirm: %v", err)
	}

	f.b.Tamper("program detached")
	if drift, err := c.Sync(ctx); err != nil || len(drift) != 1 || !drift[0].Repaired {
		t.Fatalf("sync: %+v %v", drift, err)
	}
	if st, err := c.Status(ctx); err != nil || st.Backend != "fake" || st.Default != "deny" {
		t.Fatalf("status: %+v %v", st, err)
	}
	if _, err := c.Names(ctx); !errors.Is(err, engine.ErrNotSupported) || status(err) != http.StatusNotImplemented {
		t.Fatalf("names: %v", err)
	}

	// Violations: what is kept, then a followed stream that ends with ctx.
	f.b.Emit(engine.Violation{Time: time.Now(), Exe: "/bin/x", Proto: "tcp", Daddr: netip.MustParseAddr("127.0.0.1"), Dport: 80, Verdict: engine.VerdictDeny})
	var got []engine.Violation
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got = nil
		for v, err := range c.Violations(ctx, time.Time{}, false) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
	}
	if len(got) != 1 || got[0].Exe != "/bin/x" {
		t.Fatalf("violations: %+v", got)
	}
	fctx, fcancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.b.Emit(engine.Violation{Time: time.Now().Add(time.Second), Exe: "/bin/y", Verdict: engine.VerdictDeny})
	}()
	for v, err := range c.Violations(fctx, time.Time{}, true) {
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
		if v.Exe == "/bin/y" {
			fcancel()
		}
	}
	fcancel()

	if _, err := client.New(f.socket + ".none").Status(ctx); !errors.Is(err, client.ErrNoDaemon) ||
		!strings.Contains(err.Error(), "no daemon is listening on") {
		t.Fatalf("no daemon: %v", err)
	}
}
