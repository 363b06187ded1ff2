//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// The test network: a host veth address and its peer (in a namespace the
// test creates) on a /30, and ten "far" hosts in one /24 routed via the
// peer. Benchmarking ranges (198.18.0.0/15), third octets 100-249: linux/'s
// inbound tests, which may run beside these, draw theirs from 1-99.
var (
	// The third octet is drawn per run: another checkout's tests on this
	// machine may hold the ranges of theirs (NewHost refuses overlaps).
	learnOctet    = byte(100 + rand.IntN(150))
	learnHostAddr = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, learnOctet, 1}), 30)
	learnPeerAddr = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, learnOctet, 2}), 30)
)

func learnFar(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, learnOctet, byte(10 + i)}) }

// learnRemote builds the namespace; it returns two ports listening there
// on every address.
func learnRemote(t *testing.T) (port, port2 uint16) {
	t.Helper()
	var far []netip.Addr
	for i := range 10 {
		far = append(far, learnFar(i))
	}
	h := kerneltest.NewHost(t, kerneltest.HostConfig{Host4: learnHostAddr, Peer4: learnPeerAddr, Far: far, Listeners: 2})
	return h.Ports[0], h.Ports[1]
}

// learnRun runs a client copy in the scratch cgroup against dests and
// returns its words; it then stays alive a moment so the daemon can still
// read its executable when it enriches the events.
func (w *world) learnRun(exe string, dests ...netip.AddrPort) []string {
	w.t.Helper()
	var steps []kerneltest.Attempt
	for _, d := range dests {
		steps = append(steps, kerneltest.Attempt{Proto: "tcp", Op: "connect", Sock: 4, Addr: d.Addr().String(), Port: d.Port()})
	}
	_, out := kerneltest.RunClient(w.t, exe, w.cgroup, append(steps, kerneltest.Attempt{Op: "sleep", Millis: 1000}))
	var words []string
	for _, o := range out[:len(dests)] {
		words = append(words, word(o))
	}
	return words
}

func TestLearnThenApply(t *testing.T) {
	w := newWorld(t)
	port, port2 := learnRemote(t)
	l1, l2 := uint16(listen(t)), uint16(listen(t))
	lo := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p) }
	far := func(i int, p uint16) netip.AddrPort { return netip.AddrPortFrom(learnFar(i), p) }

	bin := t.TempDir()
	os.Chmod(bin, 0o755)
	localApp := clientCopy(t, bin, "localapp")
	remoteApp := clientCopy(t, bin, "remoteapp")
	blocked := clientCopy(t, bin, "blocked")

	before := fmt.Sprintf("# the policy before learning\ndefault: allow\nmode: enforce\nrules:\n  - name: blocked\n    exe: %s\n    action: deny\n", blocked)
	os.MkdirAll(filepath.Dir(w.policy), 0o755)
	if err := os.WriteFile(w.policy, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	w.start()
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"EPERM"}) {
		t.Fatalf("blocked before learning: %v", got)
	}

	out := filepath.Join(w.dir, "learned.yaml")
	learn := exec.Command(exewall, "--socket", w.socket, "learn", "--duration", "6s", "--out", out)
	var learnErr bytes.Buffer
	learn.Stderr = &learnErr
	start := time.Now()
	if err := learn.Start(); err != nil {
		t.Fatal(err)
	}
	learnDone := make(chan error, 1)
	go func() { learnDone <- learn.Wait() }()
	t.Cleanup(func() {
		if learn.ProcessState == nil {
			learn.Process.Kill()
		}
	})
	for {
		var st engine.Status
		json.Unmarshal([]byte(w.ok("status", "--json")), &st)
		if st.Mode == "audit" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("learning did not start: %s", learnErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Edits are refused while learning, and nothing is blocked.
	w.refused("mode", "audit")
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"ok"}) {
		t.Fatalf("blocked during learning: %v, want ok (audit)", got)
	}
	if got := w.learnRun(localApp, lo(l1), lo(l2)); !reflect.DeepEqual(got, []string{"ok", "ok"}) {
		t.Fatalf("localapp: %v", got)
	}
	var dests []netip.AddrPort
	for i := 0; i < 10; i++ {
		dests = append(dests, far(i, port))
	}
	dests = append(dests, lo(l1))
	if got := w.learnRun(remoteApp, dests...); strings.Count(strings.Join(got, " "), "ok") != 11 {
		t.Fatalf("remoteapp: %v", got)
	}
	select {
	case err := <-learnDone:
		if err != nil {
			t.Fatalf("learn: %v: %s", err, learnErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("learn did not end: %s", learnErr.String())
	}
	if !strings.Contains(learnErr.String(), "wrote "+out) {
		t.Fatalf("learn stderr: %q", learnErr.String())
	}

	// The previous policy is back exactly: file untouched, blocked denied.
	if data, _ := os.ReadFile(w.policy); string(data) != before {
		t.Fatalf("policy file changed by learning:\n%s", data)
	}
	if got := w.learnRun(blocked, lo(l1)); !reflect.DeepEqual(got, []string{"EPERM"}) {
		t.Fatalf("blocked after learning: %v", got)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learned policy:\n%s", data)
	p, err := engine.Parse(data)
	if err != nil {
		t.Fatalf("learned policy does not parse: %v", err)
	}
	got := engine.ViewPolicy(p)
	want := engine.PolicyView{Default: "allow", Mode: "enforce", Rules: []engine.RuleView{
		{Name: "blocked", Exe: blocked, Action: "deny"},
		{Name: "localapp", Exe: localApp, Action: "local-only"},
		{Name: "remoteapp", Exe: remoteApp, Action: "deny", Allow: []string{
			fmt.Sprintf("127.0.0.1/32 port %d tcp", l1), fmt.Sprintf("198.19.%d.0/24 port %d tcp", learnOctet, port)}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("learned:\n got %+v\nwant %+v", got, want)
	}
	for _, s := range []string{"# observed " + remoteApp + ": 11 attempts to 11 destinations", "10 attempts to 10 addresses", "only local destinations"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("learned policy lacks the comment %q", s)
		}
	}

	// diff exits 1 when there are changes, like diff(1).
	r := w.cli("diff", out)
	if r.code != 1 {
		t.Fatalf("diff of the learned policy: exit %d, want 1: %s", r.code, r.stderr)
	}
	diff := r.stdout
	for _, s := range []string{"+ rule localapp: local-only exe " + localApp, "+ rule remoteapp: deny exe " + remoteApp, "2 added, 0 removed, 0 changed"} {
		if !strings.Contains(diff, s) {
			t.Errorf("diff lacks %q:\n%s", s, diff)
		}
	}
	bad := filepath.Join(w.dir, "bad.yaml")
	os.WriteFile(bad, []byte("default: allow\nrules:\n  - name: x\n    exe: /bin/true\n    action: maybe\n"), 0o644)
	if r := w.cli("diff", bad); r.code != 2 || !strings.Contains(r.stderr, "line 5") {
		t.Errorf("diff of an invalid file: exit %d, %q; want 2 and the line", r.code, r.stderr)
	}

	// Applied, the learned policy allows what they did and no more.
	w.ok("apply", "-f", out)
	if got := w.learnRun(localApp, lo(l1), lo(l2), far(0, port)); !reflect.DeepEqual(got, []string{"ok", "ok", "EPERM"}) {
		t.Fatalf("localapp after apply: %v, want ok ok EPERM", got)
	}
	if got := w.learnRun(remoteApp, append(dests, far(0, port2), lo(l2), netip.AddrPortFrom(learnPeerAddr.Addr(), port))...); !reflect.DeepEqual(got,
		[]string{"ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "EPERM", "EPERM", "EPERM"}) {
		t.Fatalf("remoteapp after apply: %v, want 11 ok then EPERM for a new port, a new loopback port, a new host", got)
	}
	if diff := w.ok("diff", out); !strings.HasPrefix(diff, "no changes") {
		t.Errorf("diff after apply: %s", diff)
	}
}

// TestLearnEndsWhenClientDies: a learn command killed without a chance to
// clean up leaves the daemon to end the session by itself (its lease) and
// put the previous policy back.
func TestLearnEndsWhenClientDies(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30 s lease")
	}
	w := newWorld(t)
	w.start()
	learn := exec.Command(exewall, "--socket", w.socket, "learn")
	if err := learn.Start(); err != nil {
		t.Fatal(err)
	}
	mode := func() string {
		var st engine.Status
		json.Unmarshal([]byte(w.ok("status", "--json")), &st)
		return st.Mode
	}
	for start := time.Now(); mode() != "audit"; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			learn.Process.Kill()
			t.Fatal("learning did not start")
		}
	}
	learn.Process.Kill()
	learn.Wait()
	for start := time.Now(); mode() != "enforce"; time.Sleep(200 * time.Millisecond) {
		if time.Since(start) > 45*time.Second {
			t.Fatal("the session outlived its dead client by more than its lease")
		}
	}
	w.ok("mode", "audit") // edits accepted again
}
