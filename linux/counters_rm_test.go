//go:build linux

package linux

import (
	"context"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestTotalsSurviveRuleRemoval denies a program, then removes its rule:
// the denied total must not go backwards (`exewall rm` once dropped it from
// 226 to 23).
func TestTotalsSurviveRuleRemoval(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "counted")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}})
	for range 3 {
		if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
			t.Fatalf("not denied: %+v", out[0])
		}
	}
	before, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if before.Counters.Denied < 3 {
		t.Fatalf("denied total %d before removal, want >= 3", before.Counters.Denied)
	}
	b.apply(t, &engine.Policy{})
	after, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Counters.Denied < before.Counters.Denied || after.Counters.Allowed < before.Counters.Allowed {
		t.Fatalf("totals went backwards after removing the rule: before %+v, after %+v", before.Counters, after.Counters)
	}
}
