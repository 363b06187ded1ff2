//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/engine"
)

func TestDenyLoopbackSmoke(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	denied := clientCopy(t, dir, "denied")
	allowed := clientCopy(t, dir, "allowed")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: denied}, Action: engine.ActionDeny}}})
	at := []attempt{{Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: port}}
	if _, out := runClient(t, denied, cg, at); !out[0].denied() {
		t.Fatalf("denied exe: got %+v, want EPERM", out[0])
	}
	if _, out := runClient(t, allowed, cg, at); out[0].denied() || out[0].Err != "" {
		t.Fatalf("allowed exe: got %+v", out[0])
	}
}
