//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/exewall/exewall/engine"
)

// attackerUID is who the attacks of issue 13 run as: nobody, no
// capabilities.
const attackerUID = 65534

var asAttacker = clientOpts{uid: attackerUID, gid: attackerUID, asUser: true}

// publicDir is a directory the unprivileged attacker can read and search
// (t.TempDir is root's alone), removed at the end of the test.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "exewall-datapath-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildSetexe compiles testdata/setexe.c, the prctl(PR_SET_MM_MAP) attacker.
func buildSetexe(t *testing.T, dir string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no C compiler for the attacker program: %v", err)
		}
		t.Skipf("no C compiler: %v", err)
	}
	out := filepath.Join(dir, "setexe")
	cmd := exec.Command(cc, "-O2", "-static", "-fno-stack-protector", "-fcf-protection=none", "-o", out, "testdata/setexe.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build setexe: %v: %s", err, b)
	}
	return out
}

// runSetexe runs the attacker as uid 65534 inside cg; its exit status says
// what connect(2) returned (see testdata/setexe.c).
func runSetexe(t *testing.T, setexe, cg, target string, port uint16, fork bool) (int, int) {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	args := []string{target, "127.0.0.1", strconv.Itoa(int(port))}
	if fork {
		args = append(args, "fork")
	}
	cmd := exec.Command(setexe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()),
		Credential: &syscall.Credential{Uid: attackerUID, Gid: attackerUID}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run setexe: %v", err)
	}
	code := cmd.ProcessState.ExitCode()
	switch code {
	case 3:
		t.Fatalf("setexe could not set up the attack: %s", out)
	case 4:
		t.Fatalf("the kernel refused prctl(PR_SET_MM_MAP): the attack did not happen: %s", out)
	}
	return code, cmd.Process.Pid
}

// TestIdentityTakenAtExecSurvivesPrctl (issue 13, item 1): an unprivileged
// process that makes itself root of a user namespace and swaps its
// mm->exe_file for an allowed program's (prctl PR_SET_MM_MAP) is still
// judged as what it exec'd, in itself and in a child it forks, with an event.
func TestIdentityTakenAtExecSurvivesPrctl(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	setexe := buildSetexe(t, dir)
	allowed := clientCopy(t, dir, "allowed")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "allowed", Selector: engine.Selector{Exe: allowed}, Action: engine.ActionAllow}}})

	if code, _ := runSetexe(t, setexe, cg, "-", port, false); code != 1 {
		t.Fatalf("control: the attacker program itself got exit %d, want 1 (EPERM under default deny)", code)
	}
	code, pid := runSetexe(t, setexe, cg, allowed, port, false)
	if code != 1 {
		t.Errorf("after prctl(PR_SET_MM_MAP, exe_fd=%s): exit %d, want 1 (EPERM): judged by the swapped identity", allowed, code)
	} else {
		v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.PID == uint32(pid) })
		if v.Verdict != engine.VerdictDeny {
			t.Errorf("event %+v, want a deny", v)
		}
	}
	if code, _ := runSetexe(t, setexe, cg, allowed, port, true); code != 1 {
		t.Errorf("child forked after prctl: exit %d, want 1 (EPERM)", code)
	}
}

// TestDirectLoaderRunIsJudgedAsItsProgram (issue 13, item 6): ld.so PROGRAM
// runs PROGRAM's code as the loader; it is judged as PROGRAM, while other
// programs, run directly or through the loader, keep their own verdicts.
func TestDirectLoaderRunIsJudgedAsItsProgram(t *testing.T) {
	requireKernel(t)
	loader := elfInterpreter("/bin/sh")
	if loader == "" {
		t.Fatal("no dynamic loader found (PT_INTERP of /bin/sh)")
	}
	self, _ := os.Executable()
	if elfInterpreter(self) == "" {
		t.Skip("the test binary is statically linked: nothing for the loader to run")
	}
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	denied := clientCopy(t, dir, "denied")
	other := clientCopy(t, dir, "other")
	port := listenLoopback(t)
	via := func(prog string) string {
		script := filepath.Join(dir, "via-loader-"+filepath.Base(prog))
		if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+loader+" "+prog+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return script
	}

	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("denied", denied)}})
	if _, out := runClient(t, denied, cg, loopbackTCP(port), asAttacker); !out[0].denied() {
		t.Fatalf("control: %s run directly: %+v, want EPERM", denied, out[0])
	}
	pid, out := runClient(t, via(denied), cg, loopbackTCP(port), asAttacker)
	if !out[0].denied() {
		t.Errorf("%s %s: %+v, want EPERM", loader, denied, out[0])
	} else {
		v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.PID == uint32(pid) })
		if v.Rule != "denied" {
			t.Errorf("event names rule %q, want %q", v.Rule, "denied")
		}
	}
	if _, out := runClient(t, via(other), cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Errorf("%s %s (no rule, default allow) was denied", loader, other)
	}
	if _, out := runClient(t, other, cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Errorf("%s run directly (no rule, default allow) was denied", other)
	}

	// Under default deny, a program allowed by its rule stays allowed when
	// started through the loader, and the loader lends nothing to others.
	b.apply(t, &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "other", Selector: engine.Selector{Exe: other}, Action: engine.ActionAllow}}})
	if _, out := runClient(t, via(other), cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Errorf("%s %s (allowed by its rule) was denied", loader, other)
	}
	if _, out := runClient(t, via(denied), cg, loopbackTCP(port), asAttacker); !out[0].denied() {
		t.Errorf("%s %s (no rule, default deny): %+v, want EPERM", loader, denied, out[0])
	}
}

// TestOverlayMountOfDeniedFileIsCovered (issue 13, item 7): an unprivileged
// user mounts an overlay (in a user namespace of its own) whose lower layer
// holds a denied program and runs it from there: another device number, the
// same file, the same verdict.
func TestOverlayMountOfDeniedFileIsCovered(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	lower, empty, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "empty"), filepath.Join(dir, "merged")
	for _, d := range []string{lower, empty, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	denied := clientCopy(t, lower, "denied")
	clientCopy(t, lower, "other")
	port := listenLoopback(t)
	fromOverlay := func(name string) string {
		script := filepath.Join(dir, "overlay-"+name)
		body := fmt.Sprintf("#!/bin/sh\nexec unshare -Urm sh -c 'mount -t overlay overlay -o lowerdir=%s:%s %s && exec %s/%s'\n",
			lower, empty, merged, merged, name)
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return script
	}
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("denied", denied)}})

	if _, out := runClient(t, fromOverlay("other"), cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Fatalf("control: an unlisted program run from the overlay was denied: %+v", out[0])
	}
	if _, out := runClient(t, fromOverlay("denied"), cg, loopbackTCP(port), asAttacker); !out[0].denied() {
		t.Errorf("%s run from an overlay mounted by uid %d: %+v, want EPERM", denied, attackerUID, out[0])
	}
}

// TestIdentityFallbackByThreadGroup runs the prctl attack and a plain deny
// with identities kept by thread group id (kernels whose cgroup programs
// cannot use task storage).
func TestIdentityFallbackByThreadGroup(t *testing.T) {
	requireKernel(t)
	forceTgidIdentities = true
	t.Cleanup(func() { forceTgidIdentities = false })
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	if b.taskStorage != 0 {
		t.Fatal("the fallback was not taken")
	}
	dir := publicDir(t)
	setexe := buildSetexe(t, dir)
	allowed := clientCopy(t, dir, "allowed")
	denied := clientCopy(t, dir, "denied")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Default: engine.ActionDeny, Rules: []engine.Rule{
		{Name: "allowed", Selector: engine.Selector{Exe: allowed}, Action: engine.ActionAllow}}})
	if _, out := runClient(t, allowed, cg, loopbackTCP(port), asAttacker); out[0].denied() {
		t.Errorf("allowed program denied: %+v", out[0])
	}
	if _, out := runClient(t, denied, cg, loopbackTCP(port), asAttacker); !out[0].denied() {
		t.Errorf("unlisted program under default deny: %+v, want EPERM", out[0])
	}
	if code, _ := runSetexe(t, setexe, cg, allowed, port, false); code != 1 {
		t.Errorf("after prctl(PR_SET_MM_MAP): exit %d, want 1 (EPERM)", code)
	}
	if code, _ := runSetexe(t, setexe, cg, allowed, port, true); code != 1 {
		t.Errorf("child forked after prctl: exit %d, want 1 (EPERM)", code)
	}
}

// TestProcessStartedBeforeLoadIsJudged: a process running before exewall
// loaded has no exec record; it is recorded when exewall loads (or when
// first seen) and judged by what it runs.
func TestProcessStartedBeforeLoadIsJudged(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	dir := publicDir(t)
	exe := clientCopy(t, dir, "early")
	port := listenLoopback(t)
	c := startClient(t, exe, cg, []attempt{{Op: "ready"}, {Op: "wait"}, {Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: port}})
	c.waitReady(t)
	b := newTestBackend(t, cg)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("early", exe)}})
	if out := c.proceed(t); !out[2].denied() {
		t.Errorf("a process started before exewall loaded: %+v, want EPERM", out[2])
	}
}
