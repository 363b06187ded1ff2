//go:build linux

package linux

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// retarget points link at target the way update-alternatives does: a new
// symlink renamed over the old one.
func retarget(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// alternatives builds dir/prog -> dir/alt -> dir/a, with a second program
// dir/b to switch to: /usr/bin/java -> /etc/alternatives/java -> a JDK.
func alternatives(t *testing.T) (prog, alt, a, b string) {
	t.Helper()
	dir := t.TempDir()
	a = clientCopy(t, dir, "a")
	b = clientCopy(t, dir, "b")
	alt = filepath.Join(dir, "alt")
	prog = filepath.Join(dir, "prog")
	if err := os.Symlink(a, alt); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(alt, prog); err != nil {
		t.Fatal(err)
	}
	return prog, alt, a, b
}

// noWatch keeps userspace from resolving the rule's path again during the
// test: what is judged right after the switch is the kernel's own doing.
func noWatch(c *Config) { c.WatchInterval = time.Hour }

// TestSymlinkRetargetCoveredFromFirstRun: an exe rule names a symlink chain;
// the chain is switched to another program. That program, run by the rule's
// name, is judged by the rule from its first run, before userspace has
// resolved the path again (it used to run unjudged 2-6 times).
func TestSymlinkRetargetCoveredFromFirstRun(t *testing.T) {
	requireKernel(t)
	requireExecHook(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, noWatch)
	prog, alt, _, other := alternatives(t)
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "java", Selector: engine.Selector{Exe: prog}, Action: engine.ActionDeny}}})
	if _, out := runClient(t, prog, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("the rule's program is not denied: %+v", out[0])
	}
	retarget(t, alt, other)
	for i := range 3 {
		if _, out := runClient(t, prog, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("run %d after switching the symlink: not denied (%+v)", i+1, out[0])
		}
	}
}

// TestSymlinkNameNeverLoosens: a name is only a name (another mount
// namespace can put anything at /usr/bin/java): a rule matched by the
// exec'd name may tighten the verdict, never loosen it.
func TestSymlinkNameNeverLoosens(t *testing.T) {
	requireKernel(t)
	requireExecHook(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, noWatch)
	prog, alt, _, other := alternatives(t)
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "java", Selector: engine.Selector{Exe: prog}, Action: engine.ActionAllow}}})
	if _, out := runClient(t, prog, cg, loopbackTCP(port)); out[0].denied() {
		t.Fatalf("the rule's program is denied: %+v", out[0])
	}
	retarget(t, alt, other)
	if _, out := runClient(t, prog, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("an unknown program run by the rule's name was allowed by it: %+v", out[0])
	}
}
