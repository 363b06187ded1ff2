//go:build linux

package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

func TestSecondBackendOnSamePinsRefused(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "d")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}})
	_, err := New(context.Background(), Config{Cgroup: cg, PinDir: b.pinDir})
	if err == nil || !strings.Contains(err.Error(), "another exewall daemon") {
		t.Fatalf("second backend on the same pins: %v", err)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("the first backend stopped enforcing: %+v", out[0])
	}
	// Removing the pin dir must not free the lock while the first runs.
	os.RemoveAll(b.pinDir)
	if _, err := b.Sync(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{Cgroup: cg, PinDir: b.pinDir}); err == nil || !strings.Contains(err.Error(), "another exewall daemon") {
		t.Fatalf("second backend after the pin dir was removed and restored: %v", err)
	}
	if err := b.Apply(context.Background(), &engine.Policy{}); err != nil {
		t.Fatalf("the first backend no longer applies: %v", err)
	}
}

// TestPinsRemovedAreRestored removes every pin behind the backend's back;
// enforcement must not lapse, and Sync must pin everything again so that a
// restarted daemon adopts it.
func TestPinsRemovedAreRestored(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "d")
	port := listenLoopback(t)
	p := &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}}
	b.apply(t, p)
	entries, _ := os.ReadDir(b.pinDir)
	before := len(entries)
	for _, e := range entries {
		os.Remove(filepath.Join(b.pinDir, e.Name()))
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("enforcement lapsed when the pins went: %+v", out[0])
	}
	drifts, err := b.Sync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ = os.ReadDir(b.pinDir)
	if len(entries) != before {
		t.Fatalf("%d pins after sync, want %d (drifts %+v)", len(entries), before, drifts)
	}
	for _, d := range drifts {
		if !d.Repaired {
			t.Errorf("unrepaired: %s", d.What)
		}
	}
}

// ageLayout makes the pinned layout "older": it replaces the pinned
// counter_names map with one of another value size.
func ageLayout(t *testing.T, pinDir string) {
	t.Helper()
	os.Remove(filepath.Join(pinDir, "counter_names"))
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "counter_names", Type: ebpf.Hash, KeySize: 4, ValueSize: 32, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(filepath.Join(pinDir, "counter_names")); err != nil {
		t.Fatal(err)
	}
}

// deniedUpgrade is the scene of the upgrade tests: a client copy d that
// policy p denies, a loopback port it is denied, and an older daemon that
// put p in force on cg and stopped (olderDaemonLeft).
type deniedUpgrade struct {
	cg, pinDir, exe string
	port            uint16
	p               *engine.Policy
}

func newDeniedUpgrade(t *testing.T) deniedUpgrade {
	t.Helper()
	requireKernel(t)
	u := deniedUpgrade{cg: scratchCgroup(t), pinDir: scratchPinDir(t)}
	u.exe = clientCopy(t, t.TempDir(), "d")
	u.port = listenLoopback(t)
	u.p = &engine.Policy{Rules: []engine.Rule{denyRule("d", u.exe)}}
	olderDaemonLeft(t, u.cg, u.pinDir, u.p)
	return u
}

// olderDaemonLeft plays an older daemon that put p in force and stopped
// (SIGTERM: its pins stay), its pinned maps made of an older layout.
func olderDaemonLeft(t *testing.T, cg, pinDir string, p *engine.Policy) {
	t.Helper()
	old, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	old.Close()
	ageLayout(t, pinDir)
}

// shellThenClient is a real /bin/sh started in cg that waits for a line,
// then execs the client exe: a process that forked and exec'd before a
// moment the test picks, and execs the client after it.
type shellThenClient struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bytes.Buffer
}

func startShellThenClient(t *testing.T, exe, cg string) *shellThenClient {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command("/bin/sh", "-c", `read line && exec "$0"`, exe)
	cmd.Env = append(os.Environ(), kerneltest.ClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &shellThenClient{cmd: cmd, stdin: stdin, out: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = s.out, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Until it has exec'd, it is a fork of this test binary.
	self, _ := os.Executable()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if running, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err == nil && running != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/bin/sh did not start")
		}
	}
	return s
}

// run makes the shell exec the client, which makes attempts.
func (s *shellThenClient) run(t *testing.T, attempts []attempt) []outcome {
	t.Helper()
	args, _ := json.Marshal(attempts)
	s.stdin.Write(append([]byte("exec\n"), args...))
	s.stdin.Close()
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("shell then client: %v: %s", err, s.out)
	}
	var out []kerneltest.Outcome
	if err := json.Unmarshal(s.out.Bytes(), &out); err != nil {
		t.Fatalf("client output %q: %v", s.out, err)
	}
	return outcomes(out)
}

// TestUpgradeKeepsIdentitiesOfExecsMidUpgrade: a process that forked and
// exec'd a shell before an upgrade to another map layout, and execs a
// denied program once the new daemon has loaded (its identity hooks
// attached), is judged as that program both by the older programs, which
// judge until the first apply, and by the new ones after it. The older
// identity hooks must keep the older maps up to date until the switch;
// when they were replaced at load, the older programs judged the process
// as the shell it was (CI, 1df3741: a whole client's connects got through).
func TestUpgradeKeepsIdentitiesOfExecsMidUpgrade(t *testing.T) {
	u := newDeniedUpgrade(t)
	cg, pinDir, exe, port, p := u.cg, u.pinDir, u.exe, u.port, u.p
	before, after := startShellThenClient(t, exe, cg), startShellThenClient(t, exe, cg)

	upgraded, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer upgraded.Close()
	if out := before.run(t, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("exec'd after the new daemon loaded, judged by the older programs: %+v, want EPERM", out[0])
	}
	if err := upgraded.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if out := after.run(t, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("exec'd after the first apply of the upgrade: %+v, want EPERM", out[0])
	}
}

// TestUpgradeStoppedBeforeApplyPutsOldIdentityBack: a new daemon that
// stops before its first apply leaves the older programs judging with the
// older maps, so it must put the older identity hooks back.
func TestUpgradeStoppedBeforeApplyPutsOldIdentityBack(t *testing.T) {
	u := newDeniedUpgrade(t)
	shell := startShellThenClient(t, u.exe, u.cg)
	stopped, err := New(context.Background(), Config{Cgroup: u.cg, PinDir: u.pinDir})
	if err != nil {
		t.Fatal(err)
	}
	stopped.Close()
	if out := shell.run(t, loopbackTCP(u.port)); !out[0].denied() {
		t.Fatalf("exec'd after a new daemon stopped before its first apply: %+v, want EPERM", out[0])
	}
}

// TestUpgradeCarriesInboundRecords: a socket opened before an upgrade to
// another map layout keeps its inbound record (its creator, for events;
// the peers a UDP socket sent to, whose replies it accepts). in_socks'
// values hold a spin lock, which the copier must go around: it failed to
// load for it until it did.
func TestUpgradeCarriesInboundRecords(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	holder := clientCopy(t, t.TempDir(), "holder")
	echo := listenEcho(t)
	// Inbound restricted: only then are the inbound hooks attached.
	p := &engine.Policy{DefaultInbound: engine.ActionDeny, InboundSet: true,
		Rules: []engine.Rule{{Name: "h", Selector: engine.Selector{Exe: holder}, Action: engine.ActionAllow}}}
	olderDaemonLeft(t, cg, pinDir, p)
	c := startClient(t, holder, cg, []attempt{{Proto: "tcp", Op: "hold", Sock: 4, Addr: "127.0.0.1", Port: echo},
		{Op: "ready"}, {Op: "wait"}})
	c.waitReady(t)
	upgraded, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer upgraded.Close()
	for _, fd := range socketsOf(t, c.Pid()) {
		var rec datapathInSock
		if err := upgraded.mapsByName()["in_socks"].Lookup(uint32(fd), &rec); err != nil {
			t.Fatalf("in_socks after the upgrade has no record of a socket opened before it: %v", err)
		}
		if rec.Pid != uint32(c.Pid()) {
			t.Fatalf("in_socks after the upgrade: pid %d, want the holder's %d", rec.Pid, c.Pid())
		}
	}
	c.proceed(t)
}

// TestOlderMapLayoutMigratesWithoutGap plays an upgrade: an "old" daemon
// whose counters map has another layout enforces a policy; the new backend
// starts on the same pins, finds the layout incompatible, and must take over
// with no moment where the denied program gets through.
func TestOlderMapLayoutMigratesWithoutGap(t *testing.T) {
	u := newDeniedUpgrade(t)
	cg, pinDir, exe, port, p := u.cg, u.pinDir, u.exe, u.port, u.p

	// A client hammers the denied connect throughout the upgrade.
	var leaks, tries atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			attempts := make([]attempt, 200)
			for i := range attempts {
				attempts[i] = loopbackTCP(port)[0]
			}
			_, out := runClient(t, exe, cg, attempts)
			for _, o := range out {
				tries.Add(1)
				if !o.denied() {
					leaks.Add(1)
				}
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	upgraded, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		close(stop)
		<-done
		t.Fatal(err)
	}
	defer upgraded.Close()
	if err := upgraded.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	<-done
	if leaks.Load() > 0 || tries.Load() == 0 {
		t.Fatalf("%d of %d denied connects got through during the upgrade", leaks.Load(), tries.Load())
	}
	// counter_names is sized to the policy: the hash in force behind the
	// pinned array has the current layout.
	var info *ebpf.MapInfo
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "counter_names"), nil)
	if err == nil {
		if inner, err := innerMap(pinned); err == nil && inner != nil {
			info, _ = inner.Info()
			inner.Close()
		}
		pinned.Close()
	}
	if info == nil || info.ValueSize != 64 {
		t.Fatalf("pinned counter_names not migrated: %+v", info)
	}
	if n := attachedPrograms(t, cg); n != len(hooks) {
		t.Fatalf("%d programs attached after the upgrade, want %d", n, len(hooks))
	}
	t.Logf("%d denied connects during the upgrade, none got through", tries.Load())
}
