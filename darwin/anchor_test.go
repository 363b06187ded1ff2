package darwin

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

// fakePF puts testdata/bin (the fake pfctl and launchctl) first on PATH and
// gives the fake pfctl a fresh state directory.
type fakePF struct {
	t     *testing.T
	state string
}

func newFakePF(t *testing.T) *fakePF {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("testdata", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	f := &fakePF{t: t, state: t.TempDir()}
	t.Setenv("FAKE_PF_STATE", f.state)
	return f
}

// calls returns the pfctl calls made since the last time it was asked.
func (f *fakePF) calls() []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.state, "calls"))
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	os.Remove(filepath.Join(f.state, "calls"))
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (f *fakePF) wantCalls(want ...string) {
	f.t.Helper()
	if got := f.calls(); !slices.Equal(got, want) {
		f.t.Errorf("pfctl calls:\n got %q\nwant %q", got, want)
	}
}

func (f *fakePF) anchorText() (string, bool) {
	b, err := os.ReadFile(filepath.Join(f.state, "anchors", "com.apple%exewall"))
	return string(b), err == nil
}

func (f *fakePF) tokens() []string {
	b, _ := os.ReadFile(filepath.Join(f.state, "tokens"))
	return strings.Fields(string(b))
}

func (f *fakePF) write(name, content string) {
	if err := os.WriteFile(filepath.Join(f.state, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// empty checks that pf holds nothing of ours: no anchor, no reference.
func (f *fakePF) empty() {
	f.t.Helper()
	ents, _ := os.ReadDir(filepath.Join(f.state, "anchors"))
	if len(ents) != 0 {
		f.t.Errorf("anchors left in pf: %v", ents)
	}
	if toks := f.tokens(); len(toks) != 0 {
		f.t.Errorf("pf enable references left: %v", toks)
	}
}

const (
	load     = "-a com.apple/exewall -f -"
	enable   = "-E"
	list     = "-a com.apple/exewall -vv -s rules"
	flush    = "-a com.apple/exewall -F all"
	status   = "-s info"
	mainList = "-s rules"
	anchorNm = "exewall"
)

func mustRender(t *testing.T, p *engine.Policy) *ruleset {
	t.Helper()
	rs, err := renderRuleset(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

var policyA = &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
	{Name: "backup", Selector: engine.Selector{User: "502"}, Action: engine.ActionDeny,
		Allow: dests("203.0.113.0/24 port 443 tcp")},
}}

var policyB = &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
	{Name: "ci", Selector: engine.Selector{Group: "600"}, Action: engine.ActionLocalOnly},
	{Name: "me", Selector: engine.Selector{User: "501"}, Action: engine.ActionAllow, Audit: true,
		Deny: dests("0.0.0.0/0 port 25 tcp")},
}}

func TestAnchorRoundTrip(t *testing.T) {
	f := newFakePF(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: dir}

	rsA := mustRender(t, policyA)
	if err := a.Load(ctx, rsA); err != nil {
		t.Fatal(err)
	}
	f.wantCalls(load, enable, list)
	if got, _ := f.anchorText(); got != rsA.Text {
		t.Errorf("pf anchor holds:\n%s\nwant:\n%s", got, rsA.Text)
	}
	if tok, _ := os.ReadFile(filepath.Join(dir, tokenFile)); string(tok) != "1000\n" {
		t.Errorf("kept token %q, want 1000", tok)
	}

	// The fake numbers rules as pf does, "{ tcp udp }" counting twice:
	// tagging rules @0-1 default tcp/udp, @2 icmp, @3 icmp6, @4-5 backup's
	// deny tcp/udp (no label), @6 backup's allow; then the decisions @7-8
	// backup's block tcp/udp, @9-12 the default's tcp, udp, icmp, icmp6.
	for nr, want := range map[int]ruleLabel{6: {"backup", engine.VerdictAllow}, 7: {"backup", engine.VerdictDeny}, 8: {"backup", engine.VerdictDeny},
		9: {"", engine.VerdictDeny}, 12: {"", engine.VerdictDeny}} {
		if got, ok := a.Lookup(nr); !ok || got != want {
			t.Errorf("Lookup(%d) = %+v, %v; want %+v", nr, got, ok, want)
		}
	}
	for _, nr := range []int{0, 4, 13} {
		if l, ok := a.Lookup(nr); ok {
			t.Errorf("Lookup(%d) = %+v: a tagging rule that denies, or no rule, has no label", nr, l)
		}
	}

	// A second apply replaces the anchor and keeps the one reference.
	rsB := mustRender(t, policyB)
	if err := a.Load(ctx, rsB); err != nil {
		t.Fatal(err)
	}
	f.wantCalls(load, list)
	if got, _ := f.anchorText(); got != rsB.Text {
		t.Errorf("pf anchor not replaced:\n%s", got)
	}
	if toks := f.tokens(); !slices.Equal(toks, []string{"1000"}) {
		t.Errorf("pf references %v, want [1000]", toks)
	}

	st, err := a.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.wantCalls(list, status, mainList)
	// policyB, one packet for each labelled rule: ci allow x2 (tcp, udp),
	// me allow x2, ci's block x2, me's audited pass x2.
	want := engine.Counters{Allowed: 4, Denied: 2, Audited: 2}
	if st.Backend != "pf" || st.AttachPoint != AnchorPath || st.Rules != 2 || st.Counters != want {
		t.Errorf("State = %+v; want 2 rules, counters %+v", st, want)
	}
	if c := st.RuleCounter["me"]; c != (engine.Counters{Allowed: 2, Audited: 2}) {
		t.Errorf("counters of rule me = %+v", c)
	}

	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	f.wantCalls(flush, "-X 1000")
	f.empty()
	if _, err := os.Stat(filepath.Join(dir, tokenFile)); !os.IsNotExist(err) {
		t.Errorf("token file left behind: %v", err)
	}
	if _, ok := a.Lookup(0); ok {
		t.Error("rule numbers kept after Remove")
	}
}

func TestAnchorLoadRefused(t *testing.T) {
	f := newFakePF(t)
	ctx := context.Background()
	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: t.TempDir()}
	rs := mustRender(t, policyA)
	if err := a.Load(ctx, rs); err != nil {
		t.Fatal(err)
	}
	f.calls()

	err := a.Load(ctx, &ruleset{Text: "pass out quick all\nbogus rule\n"})
	if err == nil {
		t.Fatal("Load accepted a ruleset pfctl refused")
	}
	if !strings.Contains(err.Error(), "stdin:2: syntax error") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error should quote pfctl on one line: %q", err)
	}
	f.wantCalls(load)
	if got, _ := f.anchorText(); got != rs.Text {
		t.Errorf("a refused load changed the anchor:\n%s", got)
	}
}

func TestAnchorRefusedFirstLoadDoesNotEnable(t *testing.T) {
	f := newFakePF(t)
	a := &pfAnchor{Pfctl: command("pfctl")}
	if err := a.Load(context.Background(), &ruleset{Text: "bogus\n"}); err == nil {
		t.Fatal("Load accepted a ruleset pfctl refused")
	}
	f.wantCalls(load)
	f.empty()
}

func TestAnchorAdoptsEarlierToken(t *testing.T) {
	f := newFakePF(t)
	ctx := context.Background()
	dir := t.TempDir()
	// A previous daemon took reference 1000 and kept it on disk.
	f.write("tokens", "1000\n")
	f.write("next-token", "1001\n")
	os.WriteFile(filepath.Join(dir, tokenFile), []byte("1000\n"), 0o600)

	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: dir}
	if err := a.Load(ctx, mustRender(t, policyB)); err != nil {
		t.Fatal(err)
	}
	// The new reference is taken before the old one is handed back, so pf
	// never has none.
	f.wantCalls(load, enable, "-X 1000", list)
	if toks := f.tokens(); !slices.Equal(toks, []string{"1001"}) {
		t.Errorf("pf references %v, want [1001]", toks)
	}
	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	f.wantCalls(flush, "-X 1001")
	f.empty()
}

func TestAnchorStaleTokenAfterReboot(t *testing.T) {
	f := newFakePF(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, tokenFile), []byte("77\n"), 0o600)
	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: dir}
	if err := a.Load(context.Background(), mustRender(t, policyA)); err != nil {
		t.Fatalf("a stale token must not fail the load: %v", err)
	}
	f.wantCalls(load, enable, "-X 77", list)
	if tok, _ := os.ReadFile(filepath.Join(dir, tokenFile)); string(tok) != "1000\n" {
		t.Errorf("kept token %q, want 1000", tok)
	}
}

func TestResetWithoutLoad(t *testing.T) {
	// `exewall reset` from a fresh daemon still finds the reference an
	// earlier one kept.
	f := newFakePF(t)
	dir := t.TempDir()
	f.write("tokens", "1000\n")
	f.write("next-token", "1001\n")
	os.MkdirAll(filepath.Join(f.state, "anchors"), 0o755)
	f.write("anchors/com.apple%exewall", "block return out quick all\n")
	os.WriteFile(filepath.Join(dir, tokenFile), []byte("1000\n"), 0o600)

	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: dir}
	if err := a.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.wantCalls(flush, "-X 1000")
	f.empty()
}

func TestAnchorSync(t *testing.T) {
	f := newFakePF(t)
	ctx := context.Background()
	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: t.TempDir()}
	rs := mustRender(t, policyA)
	if err := a.Load(ctx, rs); err != nil {
		t.Fatal(err)
	}
	f.calls()

	drift, err := a.Sync(ctx, rs)
	if err != nil || len(drift) != 0 {
		t.Fatalf("Sync of an intact anchor = %v, %v", drift, err)
	}
	f.wantCalls(list, status, mainList)

	// Someone flushed our anchor.
	os.Remove(filepath.Join(f.state, "anchors", "com.apple%exewall"))
	drift, err = a.Sync(ctx, rs)
	if err != nil || len(drift) != 1 || !drift[0].Repaired || !strings.Contains(drift[0].What, "does not hold") {
		t.Fatalf("Sync after a flush = %+v, %v", drift, err)
	}
	f.wantCalls(list, status, load, list, mainList)

	// Someone ran pfctl -d, which drops every reference.
	f.write("tokens", "")
	drift, err = a.Sync(ctx, rs)
	if err != nil || len(drift) != 1 || drift[0].What != "pf is disabled" || !drift[0].Repaired {
		t.Fatalf("Sync after pfctl -d = %+v, %v", drift, err)
	}
	f.wantCalls(list, status, load, enable, "-X 1000", list, mainList)

	// The host's subnets changed: same labels, new local table.
	rs2, _ := renderRuleset(&engine.Policy{Default: engine.ActionLocalOnly}, nil)
	a.Load(ctx, rs2)
	rs3, _ := renderRuleset(&engine.Policy{Default: engine.ActionLocalOnly}, testHostNets)
	f.calls()
	drift, err = a.Sync(ctx, rs3)
	if err != nil || len(drift) != 1 || !strings.Contains(drift[0].What, "subnets") {
		t.Fatalf("Sync after a subnet change = %+v, %v", drift, err)
	}
	f.wantCalls(list, status, load, list, mainList)
	if got, _ := f.anchorText(); got != rs3.Text {
		t.Error("Sync did not load the new subnets")
	}
}

// TestAnchorOrphaned: another program replaced pf's main ruleset (`pfctl -F
// all`, its own pf.conf), so nothing evaluates com.apple/*. Sync says so
// (it does not touch the main ruleset), and State stops claiming a hook:
// status shows "not enforcing". pf disabled shows the same.
func TestAnchorOrphaned(t *testing.T) {
	f := newFakePF(t)
	ctx := context.Background()
	a := &pfAnchor{Pfctl: command("pfctl"), StateDir: t.TempDir()}
	rs := mustRender(t, policyA)
	if err := a.Load(ctx, rs); err != nil {
		t.Fatal(err)
	}
	st, err := a.State(ctx)
	if err != nil || len(st.Hooks) != 1 || st.Hooks[0] != "pf anchor "+AnchorPath {
		t.Fatalf("State of an enforcing anchor = %+v, %v", st.Hooks, err)
	}
	f.write("orphaned", "")
	f.calls()
	drift, err := a.Sync(ctx, rs)
	if err != nil || len(drift) != 1 || drift[0].Repaired || !strings.Contains(drift[0].What, `no longer evaluates anchor "com.apple/*"`) {
		t.Fatalf("Sync of an orphaned anchor = %+v, %v", drift, err)
	}
	f.wantCalls(list, status, mainList) // nothing loaded, the main ruleset untouched
	st, err = a.State(ctx)
	if err != nil || len(st.Hooks) != 1 || !strings.HasPrefix(st.Hooks[0], "not enforcing: ") {
		t.Errorf("State of an orphaned anchor: hooks %q, %v", st.Hooks, err)
	}
	os.Remove(filepath.Join(f.state, "orphaned"))
	f.write("tokens", "") // pfctl -d
	st, err = a.State(ctx)
	if err != nil || len(st.Hooks) != 1 || st.Hooks[0] != "not enforcing: pf is disabled" {
		t.Errorf("State with pf disabled: hooks %q, %v", st.Hooks, err)
	}
}

func TestParseRules(t *testing.T) {
	out := `No ALTQ support in kernel
ALTQ related functions disabled
@0 pass out quick inet proto tcp from any to 203.0.113.0/24 port = https user = 502 flags S/SA keep state label "exewall:allow:r0-backup"
  [ Evaluations: 120       Packets: 33        Bytes: 9120        States: 1     ]
  [ Inserted: uid 0 pid 311 ]
@1 block return out log (user) quick proto tcp all user = 502 label "exewall:deny:r0-backup"
  [ Evaluations: 87        Packets: 4         Bytes: 256         States: 0     ]
  [ Inserted: uid 0 pid 311 ]
@2 pass out all flags S/SA keep state
  [ Evaluations: 5         Packets: 0         Bytes: 0           States: 0     ]
`
	got := parseRules([]byte(out))
	want := []listedRule{
		{Nr: 0, Label: "exewall:allow:r0-backup", Packets: 33, States: 1},
		{Nr: 1, Label: "exewall:deny:r0-backup", Packets: 4},
		{Nr: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("parseRules found %d rules: %+v", len(got), got)
	}
	for i := range want {
		got[i].Text = ""
		if got[i] != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseToken(t *testing.T) {
	for out, want := range map[string]string{
		"No ALTQ support in kernel\nALTQ related functions disabled\npf enabled\nToken : 6479385829421862807\n": "6479385829421862807",
		"pf already enabled\nToken : 42": "42",
		"pf enabled\n":                   "",
	} {
		if got, _ := parseToken([]byte(out)); got != want {
			t.Errorf("parseToken(%q) = %q, want %q", out, got, want)
		}
	}
}
