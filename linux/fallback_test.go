//go:build linux

package linux

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// TestFallbacks runs the backend as on a kernel without each optional hook
// (EXEWALL_TEST_DISABLE): it must still load and enforce, say in State
// which hooks are off, and behave as docs/kernels.md says that kernel costs.
func TestFallbacks(t *testing.T) {
	requireKernel(t)
	for _, hook := range fallbackHooks {
		t.Run(hook, func(t *testing.T) {
			t.Setenv(disableEnv, hook)
			cg := scratchCgroup(t)
			b := newTestBackend(t, cg)
			dir := t.TempDir()
			exe := clientCopy(t, dir, "denied")
			port := listenLoopback(t)
			echo := listenEcho(t)
			p := &engine.Policy{Rules: []engine.Rule{denyRule("d", exe), {Name: "h", Selector: engine.Selector{Exe: clientCopy(t, dir, "holder")}, Action: engine.ActionAllow}}}
			b.apply(t, p)

			st, err := b.State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(st.Hooks, hook) || !slices.Contains(st.Hooks, "connect4") {
				t.Errorf("hooks in force %v: want connect4 and not %s", st.Hooks, hook)
			}
			if err := b.optional[hook]; !errors.Is(err, engine.ErrNotSupported) {
				t.Errorf("why %s is off: %v, want engine.ErrNotSupported", hook, err)
			}
			if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
				t.Fatalf("without %s a denied program connects: %+v", hook, out[0])
			}
			fallbacks[hook](t, b, p, exe, cg, echo)
		})
	}
}

// fallbacks show what each missing hook costs, and what still holds.
var fallbacks = map[string]func(t *testing.T, b *testBackend, p *engine.Policy, exe, cg string, echo uint16){
	// Socket kinds are no longer refused at creation; connect still is.
	"sock_create": func(t *testing.T, b *testBackend, p *engine.Policy, exe, cg string, echo uint16) {
		if _, out := runClient(t, exe, cg, []attempt{{Op: "socket", Kind: "raw", Sock: 4}}); out[0].Errno != "" {
			t.Errorf("without sock_create a raw socket was refused: %+v", out[0])
		}
	},
	// A binary renamed over a rule's path is covered by the watch, within
	// its interval, instead of at its first exec.
	"exec": func(t *testing.T, b *testBackend, p *engine.Policy, exe, cg string, echo uint16) {
		fresh := clientCopy(t, filepath.Dir(exe), ".new")
		if err := os.Rename(fresh, exe); err != nil {
			t.Fatal(err)
		}
		port := listenLoopback(t)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, out := runClient(t, exe, cg, loopbackTCP(port)); out[0].denied() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("without the exec hook a replaced binary was not covered by the watch")
			}
		}
	},
	// Held connections are no longer cut when a rule tightens; new ones are
	// refused.
	"sock_destroy": func(t *testing.T, b *testBackend, p *engine.Policy, exe, cg string, echo uint16) {
		holder := p.Rules[1].Exe
		c := startClient(t, holder, cg, []attempt{{Proto: "tcp", Op: "hold", Sock: 4, Addr: "127.0.0.1", Port: echo},
			{Op: "ready"}, {Op: "wait"}, {Op: "use-held"}, loopbackTCP(echo)[0]})
		c.waitReady(t)
		tight := p.Clone()
		tight.Rules[1].Action = engine.ActionDeny
		b.apply(t, tight)
		out := c.proceed(t)
		if out[3].Errno != "" || !out[4].denied() {
			t.Errorf("without sock_destroy: held connection %+v (want kept), new one %+v (want EPERM)", out[3], out[4])
		}
	},
	// Executables are identified with stat(), which agrees with the kernel
	// on plain filesystems.
	"iter": func(t *testing.T, b *testBackend, p *engine.Policy, exe, cg string, echo uint16) {
		id, ok, err := b.Identify(exe)
		var st unix.Stat_t
		if err := unix.Stat(exe, &st); err != nil {
			t.Fatal(err)
		}
		if err != nil || !ok || id.Ino != st.Ino {
			t.Errorf("stat() identity of %s: %v %v %v, want inode %d", exe, id, ok, err, st.Ino)
		}
	},
}
