//go:build linux

package linux

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// runInCgroup runs argv inside cgroup cg to completion and returns its pid.
func runInCgroup(t *testing.T, cg string, argv ...string) int {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), clientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", argv, err, out)
	}
	return cmd.Process.Pid
}

// sameFile reports whether two paths name one file.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	if a == "" || b == "" {
		return false
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// eventsOf collects the events of pids until each one's counts add up to
// want (the kernel folds repeats within a second; the daemon's sweep reports
// the rest about two seconds later), failing after a while.
func eventsOf(t *testing.T, b *Backend, want uint64, pids ...int) []engine.Violation {
	t.Helper()
	n := map[int]uint64{}
	var got []engine.Violation
	timeout := time.After(15 * time.Second)
	for {
		done := true
		for _, pid := range pids {
			done = done && n[pid] >= want
		}
		if done {
			return got
		}
		select {
		case v := <-b.Violations():
			if _, ok := n[int(v.PID)]; ok || slices.Contains(pids, int(v.PID)) {
				got = append(got, v)
				n[int(v.PID)] += v.Count
			}
		case <-timeout:
			t.Fatalf("pids %v: attempts reported %v of %d each: %+v", pids, n, want, got)
		}
	}
}

// TestEventNamedByIdentityAfterExec: a program connects, then execs another
// binary. The attempt is the first program's, though by the time the event
// is read (the second attempt is reported by the sweep, seconds later) the
// PID runs /usr/bin/sleep. Reading /proc/PID/exe credited sleep.
func TestEventNamedByIdentityAfterExec(t *testing.T) {
	requireKernel(t)
	requireExecHook(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionDeny})
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(": 3<>/dev/tcp/127.0.0.1/%d 2>/dev/null; : 3<>/dev/tcp/127.0.0.1/%d 2>/dev/null; exec %s 3", port, port, sleep)
	pid := runInCgroup(t, cg, bash, "-c", script)
	for _, v := range eventsOf(t, b.Backend, 2, pid) {
		if !sameFile(t, v.Exe, bash) {
			t.Errorf("attempt by bash credited to %q (count %d)", v.Exe, v.Count)
		}
	}
}

// TestShortLivedNamedByPath: processes that made their attempts and exited
// before the event was read are named by their executable's path, every one.
func TestShortLivedNamedByPath(t *testing.T) {
	requireKernel(t)
	requireExecHook(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "shortlived")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionDeny, Mode: engine.ModeAudit})
	twice := append(loopbackTCP(port), loopbackTCP(port)...)
	var pids []int
	for range 5 {
		pid, _ := runClient(t, exe, cg, twice)
		pids = append(pids, pid)
	}
	for _, v := range eventsOf(t, b.Backend, 2, pids...) {
		if v.Exe != exe {
			t.Errorf("pid %d: attempt named %q, want %s (comm %q, count %d)", v.PID, v.Exe, exe, v.Comm, v.Count)
		}
	}
}

// TestEventsWhileDaemonDownKeepRule: attempts made while no daemon runs
// (enforcement stays pinned) are read by the next one: they must carry their
// rule and program, not look like the default's.
func TestEventsWhileDaemonDownKeepRule(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := filepath.Join("/sys/fs/bpf", randName("exewall-test-"))
	t.Cleanup(func() { Reset(context.Background(), Config{PinDir: pinDir}) })
	exe := clientCopy(t, t.TempDir(), "whiledown")
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
	pid, out := runClient(t, exe, cg, loopbackTCP(port))
	if !out[0].denied() {
		t.Fatalf("not denied while the daemon was down: %+v", out[0])
	}
	second, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	for _, v := range eventsOf(t, second, 1, pid) {
		if v.Rule != "d" || v.Exe != exe {
			t.Errorf("attempt made while the daemon was down reported with rule %q exe %q, want rule d exe %s", v.Rule, v.Exe, exe)
		}
	}
}

// requireExecHook fails (skips outside CI) when the exec hook cannot load:
// naming by identity needs it.
func requireExecHook(t *testing.T) {
	t.Helper()
	spec, err := loadExecwatch()
	if err == nil {
		var o execwatchObjects
		if err = spec.LoadAndAssign(&o, nil); err == nil {
			o.Close()
		}
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("exec hook unavailable: %v", err)
	}
	t.Skipf("exec hook unavailable: %v", err)
}
