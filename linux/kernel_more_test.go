//go:build linux

package linux

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

func loopbackTCP(port uint16) []attempt {
	return []attempt{{Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: port}}
}

func TestAuditModeReportsWithoutBlocking(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "audited")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Mode: engine.ModeAudit, Rules: []engine.Rule{{Name: "a", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}})
	pid, out := runClient(t, exe, cg, loopbackTCP(port))
	if out[0].Errno != "" {
		t.Fatalf("audit mode blocked: %+v", out[0])
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.PID == uint32(pid) })
	if v.Verdict != engine.VerdictAudit || v.Rule != "a" || v.Dport != port {
		t.Fatalf("event %+v", v)
	}
	st, _ := b.State(context.Background())
	if c := st.RuleCounter["a"]; c.Audited != 1 || c.Denied != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestHardLinkAndSymlinkAreOneExecutable(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	exe := clientCopy(t, dir, "real")
	hard := filepath.Join(dir, "hard")
	sym := filepath.Join(dir, "sym")
	if err := os.Link(exe, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, sym); err != nil {
		t.Fatal(err)
	}
	port := listenLoopback(t)
	// The rule names the symlink; the hard link and the real path run.
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "s", Selector: engine.Selector{Exe: sym}, Action: engine.ActionDeny}}})
	for _, path := range []string{exe, hard, sym} {
		if _, out := runClient(t, path, cg, loopbackTCP(port)); !out[0].denied() {
			t.Errorf("%s: %+v, want EPERM", path, out[0])
		}
	}
	other := clientCopy(t, dir, "copy")
	if _, out := runClient(t, other, cg, loopbackTCP(port)); out[0].denied() {
		t.Errorf("a copy is a different file and must not be denied by an exe rule")
	}
}

// TestOverlayfsExecutable runs a program from an overlayfs mount, where
// stat() and the kernel's exe_file inode can disagree.
func TestOverlayfsExecutable(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, work, merged} {
		os.Mkdir(d, 0o755)
	}
	clientCopy(t, lower, "denied")
	clientCopy(t, lower, "allowed")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		kerneltest.Skipf(t, "overlayfs unavailable: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	exe := filepath.Join(merged, "denied")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "o", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}})

	kid, _, _ := b.Identify(exe)
	var st unix.Stat_t
	unix.Stat(exe, &st)
	t.Logf("kernel view %v; stat dev=%d:%d ino=%d", kid, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)

	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Errorf("overlay exe: %+v, want EPERM", out[0])
	}
	if _, out := runClient(t, filepath.Join(merged, "allowed"), cg, loopbackTCP(port)); out[0].denied() {
		t.Errorf("other overlay exe denied")
	}
}

// TestRingBufferFullLosesEventsNotVerdicts stops reading a small ring buffer
// so it fills: every attempt must still be denied and counted, and the
// events that found no room must be counted as lost.
func TestRingBufferFullLosesEventsNotVerdicts(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, func(c *Config) { c.RingBufSize = uint32(os.Getpagesize()) })
	b.reader.Close() // nobody drains the ring from here on
	exe := clientCopy(t, t.TempDir(), "storm")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "storm", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}}})
	const n = 300
	attempts := make([]attempt, n)
	for i := range attempts {
		// Distinct ports: each attempt is an event of its own (repeats of
		// one attempt would be aggregated, see TestStormIsAccountedExactly).
		attempts[i] = attempt{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: port + uint16(i)}
	}
	_, out := runClient(t, exe, cg, attempts)
	for i, o := range out {
		if !o.denied() {
			t.Fatalf("attempt %d: %+v, want EPERM", i, o)
		}
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.RuleCounter["storm"]; c.Denied != n {
		t.Errorf("denied counter %d, want %d", c.Denied, n)
	}
	capacity := uint64(os.Getpagesize()) / uint64(binaryEventSize()+8)
	if st.EventsLost < n-capacity || st.EventsLost >= n {
		t.Errorf("events lost %d, want between %d and %d", st.EventsLost, n-capacity, n-1)
	}
	t.Logf("ring of %d bytes: %d of %d events lost, all %d denied", os.Getpagesize(), st.EventsLost, n, n)
}

// TestApplySwapNeverMixesPolicies flips between two policies while a client
// loops. Rule "alpha" (policy A) denies by default and allows port P; rule
// "beta" (policy B) allows by default and denies port P. A judgement that
// mixed A's rule with B's destinations would deny P in the name of "alpha"
// (and the reverse mix would deny Q in the name of "beta"): events that no
// single policy produces.
func TestApplySwapNeverMixesPolicies(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "looper")
	p, q := listenLoopback(t), listenLoopback(t)
	lp := fmt.Sprintf("127.0.0.1/32 port %d", p)
	dp, _ := parseDestForTest(lp)
	polA := &engine.Policy{Rules: []engine.Rule{{Name: "alpha", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny, Allow: []engine.Dest{dp}}}}
	polB := &engine.Policy{Rules: []engine.Rule{{Name: "beta", Selector: engine.Selector{Exe: exe}, Action: engine.ActionAllow, Deny: []engine.Dest{dp}}}}
	b.apply(t, polA)

	const n = 10000
	attempts := make([]attempt, n)
	for i := range attempts {
		port := p
		if i%2 == 1 {
			port = q
		}
		attempts[i] = attempt{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: port}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flips := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pol := polB
			if i%2 == 1 {
				pol = polA
			}
			if err := b.Apply(context.Background(), pol); err != nil {
				t.Error(err)
				return
			}
			flips++
		}
	}()
	pid, out := runClient(t, exe, cg, attempts)
	close(stop)
	wg.Wait()

	deniedP, deniedQ := 0, 0
	for i, o := range out {
		if o.denied() {
			if attempts[i].Port == p {
				deniedP++
			} else {
				deniedQ++
			}
		}
	}
	for _, v := range drainViolations(b.Backend, 300*time.Millisecond) {
		if v.PID != uint32(pid) {
			continue
		}
		// Under A only Q is denied (by alpha); under B only P (by beta).
		if (v.Dport == p && v.Rule != "beta") || (v.Dport == q && v.Rule != "alpha") {
			t.Errorf("mixed judgement: port %d denied by rule %q", v.Dport, v.Rule)
		}
	}
	if flips < 4 || deniedP == 0 || deniedQ == 0 {
		t.Fatalf("swap did not interleave with the client: %d flips, %d/%d denied", flips, deniedP, deniedQ)
	}
	t.Logf("%d policy swaps during %d attempts: %d denied on P (beta), %d on Q (alpha), none mixed", flips, n, deniedP, deniedQ)
}

func TestHundredThousandExeRules(t *testing.T) {
	requireKernel(t)
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	denied := clientCopy(t, dir, "denied")
	allowed := clientCopy(t, dir, "allowed")
	files := filepath.Join(dir, "files")
	os.Mkdir(files, 0o755)
	const n = 100_000
	p := &engine.Policy{Rules: make([]engine.Rule, 0, n)}
	for i := 0; i < n-1; i++ {
		path := filepath.Join(files, fmt.Sprint(i))
		if err := os.WriteFile(path, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		p.Rules = append(p.Rules, engine.Rule{Name: fmt.Sprintf("r%d", i), Selector: engine.Selector{Exe: path}, Action: engine.ActionDeny})
	}
	p.Rules = append(p.Rules, engine.Rule{Name: "denied", Selector: engine.Selector{Exe: denied}, Action: engine.ActionDeny})
	start := time.Now()
	b.apply(t, p)
	t.Logf("applied %d exe rules in %v", n, time.Since(start))
	port := listenLoopback(t)
	if _, out := runClient(t, denied, cg, loopbackTCP(port)); !out[0].denied() {
		t.Errorf("denied exe among %d rules: %+v", n, out[0])
	}
	if _, out := runClient(t, allowed, cg, loopbackTCP(port)); out[0].denied() {
		t.Errorf("allowed exe denied among %d rules", n)
	}
	st, _ := b.State(context.Background())
	if st.Rules != n {
		t.Errorf("state reports %d rules", st.Rules)
	}
}

// TestNothingLeftBehind checks the machine after a full backend life cycle:
// no pins, no links on the cgroup.
func TestNothingLeftBehind(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := ""
	func() {
		b, err := New(context.Background(), Config{Cgroup: cg, PinDir: scratchPinDir(t), DetachOnClose: true})
		if err != nil {
			t.Fatal(err)
		}
		pinDir = b.cfg.PinDir
		if err := b.Apply(context.Background(), &engine.Policy{Default: engine.ActionDeny}); err != nil {
			t.Fatal(err)
		}
		if n := attachedPrograms(t, cg); n != len(hooks) {
			t.Fatalf("%d programs attached, want %d", n, len(hooks))
		}
		b.Close()
	}()
	if _, err := os.Stat(pinDir); err == nil {
		t.Errorf("pin dir %s left", pinDir)
	}
	if n := attachedPrograms(t, cg); n != 0 {
		t.Errorf("%d programs still attached to %s", n, cg)
	}
}

func attachedPrograms(t *testing.T, cg string) int {
	t.Helper()
	out, err := exec.Command("bpftool", "cgroup", "show", cg).Output()
	if err != nil {
		kerneltest.Skipf(t, "bpftool unavailable: %v", err)
	}
	n := 0
	for _, line := range splitLines(string(out)) {
		// The datapath's; the inbound hooks' programs (exewall_in_*) beside
		// them at sock_create and sendmsg are counted by inboundHookNames.
		if containsAny(line, "connect4", "connect6", "sendmsg4", "sendmsg6", "sock_create") && !containsAny(line, "exewall_in_") {
			n++
		}
	}
	return n
}

// TestStormIsAccountedExactly: a storm of one repeated denied attempt is
// reported as a few aggregated events whose counts add up to exactly the
// attempts the kernel counted (the tail of the burst is flushed by the sweep).
func TestStormIsAccountedExactly(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "storm")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("storm", exe)}})
	const n = 20000
	attempts := make([]attempt, n)
	for i := range attempts {
		attempts[i] = attempt{Proto: "udp", Op: "sendto", Sock: 4, Addr: "127.0.0.1", Port: port}
	}
	pid, out := runClient(t, exe, cg, attempts)
	for i, o := range out {
		if !o.denied() {
			t.Fatalf("attempt %d: %+v", i, o)
		}
	}
	var events, total uint64
	deadline := time.After(10 * time.Second)
	for total < n {
		select {
		case v := <-b.Violations():
			if v.PID == uint32(pid) {
				events++
				total += v.Count
			}
		case <-deadline:
			t.Fatalf("after 10s: %d events account for %d of %d attempts", events, total, n)
		}
	}
	st, _ := b.State(context.Background())
	if c := st.RuleCounter["storm"]; c.Denied != n || total != n || st.EventsLost != 0 {
		t.Fatalf("counter %d, events account for %d, lost %d; want %d, %d, 0", c.Denied, total, st.EventsLost, n, n)
	}
	t.Logf("%d denied attempts reported as %d events, all accounted", n, events)
}

// TestCountersSurviveOtherApplies: a rule's counter is not reset when other
// rules come and go.
func TestCountersSurviveOtherApplies(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "d")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}})
	runClient(t, exe, cg, loopbackTCP(port))
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe), denyRule("x", "/nonexistent/x")}})
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}})
	runClient(t, exe, cg, loopbackTCP(port))
	st, _ := b.State(context.Background())
	if c := st.RuleCounter["d"]; c.Denied != 2 {
		t.Fatalf("counter of rule d after other rules came and went: %+v, want 2 denied", c)
	}
}
