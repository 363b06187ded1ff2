//go:build linux

package linux

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// deltaPolicy is a policy of n exe rules on files in dir, every second one
// with a deny entry of its own.
func deltaPolicy(t *testing.T, dir string, n int) *engine.Policy {
	t.Helper()
	p := &engine.Policy{Default: engine.ActionAllow}
	actions := []engine.Action{engine.ActionDeny, engine.ActionAllow, engine.ActionLocalOnly}
	for i := range n {
		r := engine.Rule{Name: fmt.Sprintf("r%03d", i), Selector: engine.Selector{Exe: deltaExe(t, dir, i)}, Action: actions[i%3]}
		if i%2 == 0 {
			r.Deny = []engine.Dest{{Prefix: netip.MustParsePrefix(fmt.Sprintf("10.9.%d.0/24", i)), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// deltaExe makes (once) and names executable i of dir.
func deltaExe(t *testing.T, dir string, i int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("d%03d", i))
	if _, err := os.Stat(path); err != nil {
		if err := os.WriteFile(path, []byte("\x7fELF not run\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// checkLikeFull says the backend after an apply of p holds what a full
// apply of p gives: in the kernel (the generation in force, entry by
// entry, and its config) and in what it keeps (identities, names, seen).
func checkLikeFull(t *testing.T, tb *testBackend, p *engine.Policy, wantDelta bool) {
	t.Helper()
	gen, err := tb.activeGen()
	if err != nil {
		t.Fatal(err)
	}
	if delta := tb.pair != nil && tb.pair.cur == tb.gens[gen]; delta != wantDelta {
		t.Fatalf("incremental apply taken: %v, want %v", delta, wantDelta)
	}
	ids, err := tb.resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range []struct {
		what      string
		got, want any
	}{
		{"exe identities", tb.ids.exe.lists(), ids.exe.lists()}, {"places", tb.ids.exe.cur.places(), ids.exe.cur.places()},
		{"names", tb.ids.exe.cur.nameLists(), ids.exe.cur.nameLists()},
		{"cgroups", tb.ids.cgroups, ids.cgroups}, {"uids", tb.ids.uids, ids.uids}, {"gids", tb.ids.gids, ids.gids},
	} {
		if !reflect.DeepEqual(pair.got, pair.want) && !(reflect.ValueOf(pair.got).Len() == 0 && reflect.ValueOf(pair.want).Len() == 0) {
			t.Errorf("%s: backend keeps %v, a full resolution gives %v", pair.what, pair.got, pair.want)
		}
	}
	slot := func(name string) uint32 {
		s, ok := tb.slots.get(name)
		if !ok {
			t.Fatalf("rule %s has no slot", name)
		}
		return s
	}
	c, err := compile(p, ids, slotFunc(slot))
	if err != nil {
		t.Fatal(err)
	}
	want := c.flat(p, tb.slotOf, gen)
	got, err := tb.scanGen(gen)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		what      string
		got, want any
	}{
		{"exe", got.exe, want.exe}, {"cgroups", got.cgroups, want.cgroups}, {"uids", got.uids, want.uids},
		{"gids", got.gids, want.gids}, {"dests", got.dests, want.dests}, {"paths", got.paths, want.paths},
		{"named", got.named, want.named},
	} {
		if !reflect.DeepEqual(m.got, m.want) {
			g, w := reflect.ValueOf(m.got), reflect.ValueOf(m.want)
			for _, k := range g.MapKeys() {
				if wv := w.MapIndex(k); !wv.IsValid() || !reflect.DeepEqual(wv.Interface(), g.MapIndex(k).Interface()) {
					t.Errorf("generation %d %s: kernel holds %+v: %+v, a full apply: %v", gen, m.what, k, g.MapIndex(k), wv)
				}
			}
			for _, k := range w.MapKeys() {
				if !g.MapIndex(k).IsValid() {
					t.Errorf("generation %d %s: kernel lacks %+v: %+v", gen, m.what, k, w.MapIndex(k))
				}
			}
		}
	}
	// What the backend keeps of each generation is what the kernel holds.
	for g := range uint32(2) {
		if tb.gens[g] == nil || tb.gens[g].rules == nil {
			continue
		}
		kept := emptyCompiled()
		for _, o := range tb.gens[g].rules.all() {
			o.add(kept, g)
		}
		in, err := tb.scanGen(g)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(kept.exe, in.exe) || !reflect.DeepEqual(kept.dests, in.dests) || !reflect.DeepEqual(kept.paths, in.paths) {
			t.Errorf("generation %d: the backend's record differs from the kernel's maps", g)
			for i := range p.Rules {
				if s := tb.slots.at(p.Rules[i].Name); s >= 13 && s <= 16 {
					t.Logf("rule %s slot %d exe %s ids %v", p.Rules[i].Name, s, filepath.Base(p.Rules[i].Exe), tb.ids.exe.list(p.Rules[i].Exe))
				}
			}
			for s, o := range tb.gens[g].rules.all() {
				if s >= 13 && s <= 16 {
					t.Logf("gen %d slot %d name %s keys %v", g, s, tb.slotName.name(s), o.exe())
				}
			}
			for k, v := range in.exe {
				if w, ok := kept.exe[k]; !ok || w != v {
					t.Logf("exe kernel %v: id %d action %d; kept %v id %d", k.Id, v.Id&^genBit, v.Action, ok, w.Id&^genBit)
				}
			}
			for k, v := range kept.exe {
				if _, ok := in.exe[k]; !ok {
					t.Logf("exe kept only %v: id %d", k.Id, v.Id&^genBit)
				}
			}
			for k, v := range in.paths {
				if w, ok := kept.paths[k]; !ok || w != v {
					t.Logf("path kernel %s: id %d; kept %v id %d", fromInt8(k.Name[:]), v.Id&^genBit, ok, w.Id&^genBit)
				}
			}
		}
	}
	var config datapathConfig
	if err := tb.objs.Configs.Lookup(gen, &config); err != nil {
		t.Fatal(err)
	}
	if c.config.DefaultCounter = 0; config != c.config {
		t.Errorf("config: kernel holds %+v, a full apply writes %+v", config, c.config)
	}
	var names []string
	for i := range p.Rules {
		names = append(names, p.Rules[i].Name)
	}
	slices.Sort(names)
	var inTable []string
	for _, r := range tb.rules {
		if r != nil {
			inTable = append(inTable, r.Name)
		}
	}
	if slices.Sort(inTable); !slices.Equal(inTable, names) {
		t.Errorf("rule table: %v, want %v", inTable, names)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for n := range tb.slots.all() {
			if !yield(n) {
				return
			}
		}
	}); !slices.Equal(got, names) {
		t.Errorf("slots: %v, want %v", got, names)
	}
	// Events name the rule of their slot, with its exe.
	snap := tb.names.Load()
	for i := range p.Rules {
		r := &p.Rules[i]
		name, _ := snap.slotName.get(tb.slots.at(r.Name))
		got := snap.rule(tb.slots.at(r.Name), name)
		if name != r.Name || got == nil || got.Exe != r.Exe || got.Action != r.Action {
			t.Errorf("slot of %s: events would name %q (%+v)", r.Name, name, got)
		}
		if in := tb.ruleNamed(r.Name); in == nil || in.Exe != r.Exe || in.Action != r.Action {
			t.Errorf("ruleNamed(%s) = %+v", r.Name, in)
		}
	}
	if tb.policy != p && !reflect.DeepEqual(tb.policy, p) {
		t.Errorf("policy in force is not the one applied")
	}
}

// TestApplyDeltaLikeFull edits a policy rule by rule, as the CLI does, and
// checks after every edit that the incremental apply left the kernel's
// maps and the backend's state as a full apply of the same policy would.
func TestApplyDeltaLikeFull(t *testing.T) {
	requireKernel(t)
	tb := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	ctx := engine.WithOwnedPolicy(context.Background())
	p := deltaPolicy(t, dir, 40)
	if err := tb.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkLikeFull(t, tb, p, false)
	step := func(what string, wantDelta bool, edit func(p *engine.Policy)) {
		t.Helper()
		next := p.Clone()
		edit(next)
		if err := tb.Apply(ctx, next); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		p = next
		t.Run(what, func(t *testing.T) { checkLikeFull(t, tb, p, wantDelta) })
	}
	step("action changed", true, func(p *engine.Policy) { p.Rules[5].Action = engine.ActionDeny })
	step("action changed back", true, func(p *engine.Policy) { p.Rules[5].Action = engine.ActionLocalOnly })
	step("action changed again", true, func(p *engine.Policy) { p.Rules[5].Action = engine.ActionDeny })
	step("rule appended", true, func(p *engine.Policy) {
		p.Rules = append(p.Rules, engine.Rule{Name: "new", Selector: engine.Selector{Exe: deltaExe(t, dir, 100)}, Action: engine.ActionDeny})
	})
	step("rule removed", true, func(p *engine.Policy) { p.Rules = slices.Delete(p.Rules, 3, 4) })
	step("rule replaced in place", true, func(p *engine.Policy) {
		p.Rules[7] = engine.Rule{Name: "other", Selector: engine.Selector{Exe: deltaExe(t, dir, 101)}, Action: engine.ActionAllow,
			Deny: []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}
	})
	step("destinations changed", true, func(p *engine.Policy) {
		p.Rules[0].Deny = append(p.Rules[0].Deny, engine.Dest{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PortLo: 80, PortHi: 80})
	})
	step("exe changed", true, func(p *engine.Policy) { p.Rules[10].Exe = deltaExe(t, dir, 102) })
	step("exe taken by another rule", true, func(p *engine.Policy) {
		// r012 goes, and r013 takes its file.
		at := slices.IndexFunc(p.Rules, func(r engine.Rule) bool { return r.Name == "r012" })
		exe := p.Rules[at].Exe
		p.Rules = slices.Delete(p.Rules, at, at+1)
		p.Rules[at].Exe = exe
		if p.Rules[at].Name != "r013" {
			t.Fatalf("rule %s after r012", p.Rules[at].Name)
		}
	})
	step("user rule appended", true, func(p *engine.Policy) {
		p.Rules = append(p.Rules, engine.Rule{Name: "root", Selector: engine.Selector{User: "0"}, Action: engine.ActionAllow})
	})
	step("user rule removed", true, func(p *engine.Policy) { p.Rules = p.Rules[:len(p.Rules)-1] })
	step("rule for a missing file", true, func(p *engine.Policy) {
		p.Rules = append(p.Rules, engine.Rule{Name: "missing", Selector: engine.Selector{Exe: filepath.Join(dir, "missing")}, Action: engine.ActionDeny})
	})
	// A path not watched (no file) is resolved again at every apply: the
	// next change is a full one.
	step("after a missing file", false, func(p *engine.Policy) { p.Rules[1].Action = engine.ActionDeny })
	step("missing file removed", false, func(p *engine.Policy) { p.Rules = p.Rules[:len(p.Rules)-1] })
	step("then incremental again", true, func(p *engine.Policy) { p.Rules[1].Action = engine.ActionAllow })
	// A file renamed over a rule's path: the next change resolves
	// everything again, so the new identity is in force with it.
	tmp := filepath.Join(dir, "upgrade")
	if err := os.WriteFile(tmp, []byte("\x7fELF new\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.Rules[2].Exe); err != nil {
		t.Fatal(err)
	}
	step("after a file renamed over a rule's path", false, func(p *engine.Policy) { p.Rules[4].Action = engine.ActionDeny })
	if n := len(tb.ids.exe.list(p.Rules[2].Exe)); n != 2 {
		t.Errorf("the replaced file's rule has %d identities, want the old and the new", n)
	}
	step("incremental after the rename", true, func(p *engine.Policy) { p.Rules[4].Action = engine.ActionAllow })
	step("default changed", false, func(p *engine.Policy) { p.Default = engine.ActionDeny })
	step("many rules changed", false, func(p *engine.Policy) {
		for i := range p.Rules[:20] {
			p.Rules[i].Audit = !p.Rules[i].Audit
		}
	})
	step("incremental after a full apply", true, func(p *engine.Policy) { p.Rules[4].Action = engine.ActionDeny })
	// A run of changes.
	for k := range 35 {
		step(fmt.Sprintf("flip %d", k), true, func(p *engine.Policy) {
			p.Rules[k%7].Action = []engine.Action{engine.ActionAllow, engine.ActionDeny}[k%2]
		})
	}
}

// TestApplyDeltaFails checks that an incremental apply that fails leaves
// the policy in force as it was, and the next one goes on from there.
func TestApplyDeltaFails(t *testing.T) {
	requireKernel(t)
	tb := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	ctx := engine.WithOwnedPolicy(context.Background())
	p := deltaPolicy(t, dir, 10)
	if err := tb.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	bad := p.Clone()
	bad.Rules = append(bad.Rules, engine.Rule{Name: "nobody", Selector: engine.Selector{User: "no-such-user-exewall"}, Action: engine.ActionDeny})
	if err := tb.Apply(ctx, bad); err == nil {
		t.Fatal("apply of a rule for an unknown user succeeded")
	}
	checkLikeFull(t, tb, p, false)
	next := p.Clone()
	next.Rules[1].Action = engine.ActionDeny
	if err := tb.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	checkLikeFull(t, tb, next, true)
}

// TestManagerDeltaEndToEnd drives the incremental path the way the CLI
// does, through a Manager with its policy file: every change is in force
// as a full apply would make it and on disk; two rules naming one file
// (a hard link) are refused with nothing changed; a file renamed over a
// rule's path is seen by the next change.
func TestManagerDeltaEndToEnd(t *testing.T) {
	requireKernel(t)
	tb := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	p := deltaPolicy(t, dir, 30)
	data, err := engine.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m := engine.NewManager(engine.ManagerConfig{Backend: tb.Backend, PolicyFile: path, RollbackFile: filepath.Join(dir, "rollback.yaml")})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// inForce: the backend holds what a full apply of the policy in force
	// gives, and the file says that policy.
	inForce := func(what string, wantDelta bool) {
		t.Helper()
		t.Run(what, func(t *testing.T) {
			cur := m.Policy()
			checkLikeFull(t, tb, cur, wantDelta)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			onDisk, err := engine.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(engine.ViewPolicy(onDisk), engine.ViewPolicy(cur)) {
				t.Errorf("the file says another policy than the one in force")
			}
		})
	}
	rule := func(name, exe string, a engine.Action) engine.Rule {
		return engine.Rule{Name: name, Selector: engine.Selector{Exe: exe}, Action: a}
	}
	if _, err := m.AddRule(ctx, rule("r005", p.Rules[5].Exe, engine.ActionAllow)); err != nil {
		t.Fatal(err)
	}
	inForce("action changed", true)
	if _, err := m.AddRule(ctx, rule("added", deltaExe(t, dir, 200), engine.ActionDeny)); err != nil {
		t.Fatal(err)
	}
	inForce("rule added", true)
	// A hard link to r007's file is the same executable: refused.
	link := filepath.Join(dir, "link")
	if err := os.Link(p.Rules[7].Exe, link); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, err := m.AddRule(ctx, rule("linked", link, engine.ActionDeny)); err == nil || !strings.Contains(err.Error(), "same executable") {
		t.Fatalf("a rule for a hard link of another rule's file: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused change wrote the policy file")
	}
	inForce("duplicate refused", true)
	// Once r007 is gone, the link may have a rule.
	if _, err := m.RemoveRule(ctx, "r007"); err != nil {
		t.Fatal(err)
	}
	inForce("rule removed", true)
	if _, err := m.AddRule(ctx, rule("linked", link, engine.ActionDeny)); err != nil {
		t.Fatal(err)
	}
	inForce("the file handed over", true)
	// A rule renamed: the same executable under another name.
	if _, err := m.AddRule(ctx, rule("renamed", p.Rules[9].Exe, engine.ActionDeny)); err != nil {
		t.Fatal(err)
	}
	inForce("rule renamed", true)
	// A new file renamed over r003's path: the next change resolves every
	// path again, and r003 covers the new file (and still the old one).
	tmp := filepath.Join(dir, "upgrade")
	if err := os.WriteFile(tmp, []byte("\x7fELF upgraded\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.Rules[3].Exe); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddRule(ctx, rule("r010", p.Rules[10].Exe, engine.ActionAllow)); err != nil {
		t.Fatal(err)
	}
	inForce("after an upgrade", false)
	if n := len(tb.ids.exe.list(p.Rules[3].Exe)); n != 2 {
		t.Errorf("the upgraded file's rule has %d identities, want 2", n)
	}
	if _, err := m.AddRule(ctx, rule("r010", p.Rules[10].Exe, engine.ActionDeny)); err != nil {
		t.Fatal(err)
	}
	inForce("incremental again", true)
	// Two rules that did not change come to name one file (r012's path
	// becomes a symlink to r013's): the next change is refused, as the
	// full check refuses it, and nothing changes.
	if err := os.Remove(p.Rules[12].Exe); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p.Rules[13].Exe, p.Rules[12].Exe); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddRule(ctx, rule("r014", p.Rules[14].Exe, engine.ActionAllow)); err == nil || !strings.Contains(err.Error(), "same executable") {
		t.Fatalf("a change while two rules name one file: %v", err)
	}
}

// TestDeltaVerdicts: what incremental applies put in force is what a
// client meets, and the violations they cause name the rule as changed.
func TestDeltaVerdicts(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	dir := t.TempDir()
	client := clientCopy(t, dir, "delta-client")
	lport := listenLoopback(t)
	p := deltaPolicy(t, dir, 20)
	data, err := engine.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m := engine.NewManager(engine.ManagerConfig{Backend: tb.Backend, PolicyFile: path, RollbackFile: filepath.Join(dir, "rollback.yaml")})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	attempts := []attempt{{Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: lport}}
	want := func(what string, denied bool) {
		t.Helper()
		drainViolations(tb.Backend, 0)
		pid, out := runClient(t, client, cg, attempts)
		if out[0].denied() != denied {
			t.Fatalf("%s: connect %+v, want denied %v", what, out[0], denied)
		}
		if !denied {
			return
		}
		seen := 0
		for _, v := range drainViolations(tb.Backend, 300*time.Millisecond) {
			if v.PID != uint32(pid) {
				continue
			}
			seen++
			if v.Rule != "client" || v.Exe != client {
				t.Errorf("%s: violation names rule %q exe %q, want client %s", what, v.Rule, v.Exe, client)
			}
		}
		if seen == 0 {
			t.Errorf("%s: no violation for the denied connect", what)
		}
	}
	set := func(a engine.Action) {
		t.Helper()
		if _, err := m.AddRule(ctx, engine.Rule{Name: "client", Selector: engine.Selector{Exe: client}, Action: a}); err != nil {
			t.Fatal(err)
		}
		gen, _ := tb.activeGen()
		if tb.pair == nil || tb.pair.cur != tb.gens[gen] {
			t.Fatal("the change was not applied incrementally")
		}
	}
	want("no rule", false)
	set(engine.ActionDeny)
	want("rule added, deny", true)
	set(engine.ActionAllow)
	want("allow", false)
	set(engine.ActionDeny)
	want("deny again", true)
	if _, err := m.RemoveRule(ctx, "client"); err != nil {
		t.Fatal(err)
	}
	want("rule removed", false)
}

// TestDeltaKeepsOneCopyOfTheIdentities: a CLI change that adds an
// executable (validated as the engine does, then applied as a delta)
// leaves one map of the policy's identities, the one in force: neither a
// copy the validation made nor the watcher's memo beside it (two copies
// were 24 MB at 100,000 rules).
func TestDeltaKeepsOneCopyOfTheIdentities(t *testing.T) {
	requireKernel(t)
	tb := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	ctx := context.Background()
	p := deltaPolicy(t, dir, 40)
	if err := tb.Apply(engine.WithOwnedPolicy(ctx), p); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		next := p.Clone()
		next.Rules = append(next.Rules, engine.Rule{Name: fmt.Sprintf("new%d", i), Selector: engine.Selector{Exe: deltaExe(t, dir, 100+i)}, Action: engine.ActionDeny})
		var paths []string
		for _, r := range next.Rules {
			paths = append(paths, r.Exe)
		}
		if _, err := tb.IdentifyAll(paths); err != nil { // the engine's validation
			t.Fatal(err)
		}
		if err := tb.Apply(engine.WithOwnedPolicy(ctx), next); err != nil {
			t.Fatal(err)
		}
		tb.exes.mu.Lock()
		m := tb.exes.memo
		tb.exes.mu.Unlock()
		if m != nil && len(m.found) > 0 && !sameMap(m.found, tb.ids.exe.cur) {
			t.Fatalf("change %d: the memo keeps %d identities beside the %d in force", i, len(m.found), len(tb.ids.exe.cur))
		}
		checkLikeFull(t, tb, next, true) // (its full resolution makes a memo of its own)
		p = next
	}
}

// sameMap says whether a and b are the same map (not equal ones).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return a != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
