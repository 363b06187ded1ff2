//go:build linux

package linux

import (
	"context"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestRestartAdoptsPinnedLinks closes a backend the way a stopping daemon
// does (enforcement stays), then starts another on the same pins: the policy
// must hold throughout and the programs must not be attached twice.
func TestRestartAdoptsPinnedLinks(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	exe := clientCopy(t, t.TempDir(), "denied")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}}

	first, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("enforcement lapsed when the first backend closed: %+v", out[0])
	}

	second, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after adoption, want %d", n, len(hooks))
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("adopted programs do not enforce: %+v", out[0])
	}
	st, err := second.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.RuleCounter["d"]; c.Denied != 2 {
		t.Errorf("counters did not survive the restart: %+v", c)
	}
	if err := second.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after re-apply, want %d", n, len(hooks))
	}
}
