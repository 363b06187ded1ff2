//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestMemoDoesNotOutliveExec: a thread whose sends were just allowed (the
// datapath memoizes that verdict per CPU and thread) execs a denied program,
// keeping its pid; the denied program's first send and connect to the same
// destination get EPERM, and the events name the denied program's rule.
func TestMemoDoesNotOutliveExec(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	denied, free := clientCopy(t, dir, "memo-denied"), clientCopy(t, dir, "memo-free")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("memo-denied", denied)}})
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=9", "H3_NEXT=" + denied}
	res := runAttacker(t, free, cg, "", "memo-exec", env, false, nil)
	if res["socket"] != "" || res["send-before"] != "" {
		t.Fatalf("control: the allowed program's sends failed: %v", res)
	}
	if res["send"] != "EPERM" || res["connect"] != "EPERM" {
		t.Fatalf("the denied program exec'd by an allowed thread got %v, want EPERM for send and connect", res)
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.Rule == "memo-denied" })
	t.Logf("after exec: %v; event: rule %s exe %s", res, v.Rule, v.Exe)
}
