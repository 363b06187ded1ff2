//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestEventNamesCall: a denied UDP connect sent nothing and says so (it is
// how glibc's getaddrinfo sorts addresses), unlike a denied datagram.
func TestEventNamesCall(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "caller")
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "d", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}})
	pid, out := runClient(t, exe, cg, []attempt{
		{Proto: "udp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: 80},
		{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: 81},
	})
	if !out[0].denied() || !out[1].denied() {
		t.Fatalf("not denied: %+v", out)
	}
	calls := map[uint16]engine.Violation{}
	for _, v := range eventsOf(t, b.Backend, 2, pid) {
		calls[v.Dport] = v
	}
	if v := calls[80]; v.Call != engine.CallConnect || !v.ConnectOnly() {
		t.Errorf("UDP connect reported as call %q (connect only: %v)", v.Call, v.ConnectOnly())
	}
	if v := calls[81]; v.Call != engine.CallSend || v.ConnectOnly() {
		t.Errorf("UDP sendto reported as call %q (connect only: %v)", v.Call, v.ConnectOnly())
	}
}
