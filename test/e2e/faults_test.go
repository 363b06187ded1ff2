//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

// The daemon-level fault tests of docs/RELIABILITY.md. Each one was shown
// to fail with its recovery removed; RELIABILITY.md says how.

// status returns `exewall status --json`.
// status asks the daemon through the public client (e2e_test checks the
// CLI's `status --json`).
func (w *world) status() engine.Status {
	w.t.Helper()
	st, err := client.New(w.socket).Status(context.Background())
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	return st
}

// waitFor polls cond until it holds; the deadline is a safety net against
// a hang (the test fails saying what never happened), not a performance
// bound.
func (w *world) waitFor(what string, cond func() bool) {
	w.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: did not happen", what)
		}
	}
}

// runClient is connect without failing the test (for goroutines): it runs
// exe in the scratch cgroup and returns what it printed.
func (w *world) runClient(exe string, port, count int) (string, error) {
	cg, err := os.Open(w.cgroup)
	if err != nil {
		return "", err
	}
	defer cg.Close()
	cmd := exec.Command(exe, "tcp4", "127.0.0.1", fmt.Sprint(port), fmt.Sprint(count))
	cmd.Env = append(os.Environ(), clientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("client %s: %v: %s", exe, err, errOut.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// parseCounts reads the client's "map[EPERM:12 ok:3]" summary.
func parseCounts(out string) map[string]int {
	counts := map[string]int{}
	for _, f := range strings.Fields(strings.TrimSuffix(strings.TrimPrefix(out, "map["), "]")) {
		k, v, _ := strings.Cut(f, ":")
		var n int
		fmt.Sscan(v, &n)
		counts[k] += n
	}
	if len(counts) == 0 && out != "" {
		counts[out] = 1 // a count of 1 prints the word alone
	}
	return counts
}

// denyLoop keeps procs client processes making denied connects (batches
// of batch) until stop is closed; it counts attempts and leaks.
type denyLoop struct {
	tries, leaks atomic.Int64
	errs         chan error
	stop         chan struct{}
	wg           sync.WaitGroup
}

func (w *world) startDenyLoop(exe string, port, procs, batch int) *denyLoop {
	d := &denyLoop{errs: make(chan error, procs), stop: make(chan struct{})}
	for range procs {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for {
				select {
				case <-d.stop:
					return
				default:
				}
				out, err := w.runClient(exe, port, batch)
				if err != nil {
					d.errs <- err
					return
				}
				for k, n := range parseCounts(out) {
					d.tries.Add(int64(n))
					if k != "EPERM" {
						d.leaks.Add(int64(n))
					}
				}
			}
		}()
	}
	return d
}

func (d *denyLoop) finish(t *testing.T) (tries, leaks int64) {
	t.Helper()
	close(d.stop)
	d.wg.Wait()
	select {
	case err := <-d.errs:
		t.Fatal(err)
	default:
	}
	return d.tries.Load(), d.leaks.Load()
}

// TestFaultSIGKILLUnderStorm kills the daemon while several processes make
// denied connects: enforcement holds while no daemon runs, the restarted
// daemon adopts the pinned links (attached once), and the kernel's
// counters are exact across the restart.
func TestFaultSIGKILLUnderStorm(t *testing.T) {
	const procs, batch = 4, 2000
	w := newWorld(t)
	blocked := clientCopy(t, t.TempDir(), "storm")
	port := listen(t)
	w.start()
	w.ok("deny", "--name", "storm", blocked)

	// The storm runs before, during and after the daemon's absence.
	loop := w.startDenyLoop(blocked, port, procs, batch)
	w.waitFor("storm under way", func() bool { return w.status().RuleCounter["storm"].Denied > 5000 })
	w.stop(syscall.SIGKILL)
	killedAt, triesAtKill := time.Now(), loop.tries.Load()
	// No daemon: the kernel still judges, from the pinned links.
	w.waitFor("denied connects while no daemon runs", func() bool { return loop.tries.Load() > triesAtKill+2*batch })
	w.wantAttachedOnce()
	w.start()
	restartedIn := time.Since(killedAt)
	w.wantAttachedOnce()
	triesAtStart := loop.tries.Load()
	w.waitFor("denied connects after the restart", func() bool { return loop.tries.Load() > triesAtStart+2*batch })
	tries, leaks := loop.finish(t)
	if leaks > 0 {
		t.Fatalf("%d of %d denied connects got through", leaks, tries)
	}
	st := w.status()
	if got := st.RuleCounter["storm"].Denied; got != uint64(tries) {
		t.Fatalf("kernel counted %d denied across the SIGKILL and restart, want exactly %d", got, tries)
	}
	if st.RuleCounter["storm"].Allowed != 0 {
		t.Fatalf("kernel allowed %d", st.RuleCounter["storm"].Allowed)
	}
	if rules := w.fileMatchesLs(); len(rules) != 1 || rules[0].Name != "storm" {
		t.Fatalf("rules after restart: %+v", rules)
	}
	// Other rules coming and going leave the storm's counter alone.
	w.ok("deny", "--name", "other", "/usr/local/bin/exewall-e2e-other")
	w.ok("rm", "other")
	if got := w.status().RuleCounter["storm"].Denied; got != uint64(tries) {
		t.Fatalf("kernel counter %d after another rule was added and removed, want still %d", got, tries)
	}
	t.Logf("%d denied connects from %d looping processes across a SIGKILL (daemon back in %v, %d connects while none ran): "+
		"kernel counted exactly %d, none got through; restarted daemon received %d events, %d lost",
		tries, procs, restartedIn.Round(time.Millisecond), triesAtStart-triesAtKill, st.RuleCounter["storm"].Denied, st.Violations, st.EventsLost)
}

// TestFaultPolicyFile deletes, truncates and corrupts the policy file under
// a running daemon: the policy in force stays, status says why the file is
// not in force, the refusal is logged, a later valid file is followed, and
// a restart after the deletion still enforces every rule.
func TestFaultPolicyFile(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	good := "# the admin's comment\ndefault: allow\nrules:\n  - name: client\n    exe: " + client + "\n    action: deny\n"
	os.MkdirAll(filepath.Dir(w.policy), 0o755)
	os.WriteFile(w.policy, []byte(good), 0o644)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w.start("--metrics-addr", metrics)
	w.wantVerdict(client, port, "EPERM")
	rules := w.rules()

	held := func(step string) {
		t.Helper()
		w.wantVerdict(client, port, "EPERM")
		if got := w.rules(); !reflect.DeepEqual(got, rules) {
			t.Fatalf("%s: rules in force changed: %+v", step, got)
		}
	}
	refused := func(step, says string) {
		t.Helper()
		w.waitFor(step+": status names the refused file", func() bool {
			return strings.Contains(w.status().PolicyFileError, says)
		})
		held(step)
		if !strings.Contains(metricsText(t, metrics), "exewall_policy_file_refused 1") {
			t.Errorf("%s: /metrics does not report the refused file", step)
		}
	}

	t.Run("deleted", func(t *testing.T) {
		os.Remove(w.policy)
		w.waitFor("deleted file written back", func() bool {
			data, err := os.ReadFile(w.policy)
			return err == nil && string(data) == good
		})
		held("deleted")
		if st := w.status(); st.PolicyFileError != "" {
			t.Errorf("status after the file was written back: %q", st.PolicyFileError)
		}
		log, _ := os.ReadFile(w.logFile)
		if !strings.Contains(string(log), "policy file was deleted") {
			t.Errorf("deletion not logged")
		}
		// A restart (no file would mean the default policy) loses nothing.
		w.stop(syscall.SIGTERM)
		w.start("--metrics-addr", metrics)
		held("restart after deletion")
	})

	for _, tc := range []struct{ name, data, says string }{
		{"truncated to zero", "", "empty"},
		{"truncated mid-rule", good[:len(good)-10], "line 6"},
		{"corrupted", "default: allow\nrules:\n  - \x00\x01\xff{{{\n", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Written in place, as a crashing or non-atomic writer leaves it.
			if err := os.WriteFile(w.policy, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			refused(tc.name, tc.says)
			log, _ := os.ReadFile(w.logFile)
			if !strings.Contains(string(log), "policy file refused; the policy in force stays") {
				t.Errorf("refusal not logged")
			}
			// Put the good file back: followed, status clear.
			os.WriteFile(w.policy, []byte(good), 0o644)
			w.waitFor("status clears once the good file is back", func() bool { return w.status().PolicyFileError == "" })
			held(tc.name + ", then repaired")
		})
	}

	t.Run("a later valid file is followed", func(t *testing.T) {
		os.WriteFile(w.policy, []byte("garbage: ["), 0o644)
		refused("corrupted again", "yaml")
		tmp := w.policy + ".new"
		os.WriteFile(tmp, []byte("default: allow\nrules: []\n"), 0o644)
		os.Rename(tmp, w.policy)
		w.waitFor("valid file followed", func() bool { return len(w.rules()) == 0 })
		w.wantVerdict(client, port, "ok")
		if st := w.status(); st.PolicyFileError != "" {
			t.Errorf("status still reports %q", st.PolicyFileError)
		}
	})
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// mountTmpfs mounts a tmpfs of size bytes at dir until the test ends.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// TestFaultViolationsLogDiskFull runs the daemon with its state dir on a
// small tmpfs and fills it with violations: enforcement, the API and CLI
// edits keep working, the lost lines are counted in status and /metrics,
// the log keeps only whole lines, and it resumes once there is room.
func TestFaultViolationsLogDiskFull(t *testing.T) {
	const connects = 50000 // about 12 MB of log lines
	w := newWorld(t)
	// Registered after newWorld's cleanup, so it runs (unmounts) before
	// the daemon is stopped: lazily, MNT_DETACH.
	mountTmpfs(t, w.stateDir, 256<<10)
	// Fill it completely, so that the first flush fails however many
	// events the daemon gets to read.
	filler := filepath.Join(w.stateDir, "filler")
	fill(t, filler)
	blocked := clientCopy(t, t.TempDir(), "blocked")
	other := clientCopy(t, t.TempDir(), "other")
	port := listen(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w.start("--metrics-addr", metrics, "--violations-log-size", "1000000000")
	w.ok("deny", "--name", "blocked", blocked)

	done := make(chan string, 1)
	go func() {
		out, err := w.runClient(blocked, port, connects)
		if err != nil {
			out = err.Error()
		}
		done <- out
	}()
	calls := 0
	for running := true; running; calls++ {
		select {
		case out := <-done:
			if out != fmt.Sprintf("map[EPERM:%d]", connects) {
				t.Fatalf("storm: %s", out)
			}
			running = false
		default:
			w.status() // the API answers throughout
			time.Sleep(50 * time.Millisecond)
		}
	}
	var st engine.Status
	w.waitFor("loss reported in status", func() bool {
		st = w.status()
		return st.ViolationsLogLost > 0 && strings.Contains(st.ViolationsLogError, "no space left on device")
	})
	if got := st.RuleCounter["blocked"].Denied; got != connects {
		t.Fatalf("kernel counted %d denied, want %d", got, connects)
	}
	body := metricsText(t, metrics)
	if !strings.Contains(body, "exewall_violations_log_failing 1") || strings.Contains(body, "exewall_violations_log_lost_total 0\n") {
		t.Errorf("/metrics does not report the loss:\n%s", grepLines(body, "violations_log"))
	}
	// CLI edits and the violations window still work.
	w.ok("deny", "--name", "other", other)
	w.wantVerdict(other, port, "EPERM")
	if len(w.violations()) == 0 {
		t.Errorf("violations window empty")
	}
	wholeLines(t, filepath.Join(w.stateDir, "violations.log"))
	lostWhileFull := st.ViolationsLogLost

	// Room again: the log resumes by itself.
	os.Remove(filler)
	pid := w.wantVerdict(other, port, "EPERM")
	w.waitFor("log writable again", func() bool { return w.status().ViolationsLogError == "" })
	w.waitFor("new violation in the log", func() bool {
		data, _ := os.ReadFile(filepath.Join(w.stateDir, "violations.log"))
		return bytes.Contains(data, []byte(fmt.Sprintf(`"pid":%d,`, pid)))
	})
	wholeLines(t, filepath.Join(w.stateDir, "violations.log"))
	st = w.status()
	t.Logf("%d denied connects with the state dir full: %d log lines lost (reported), API answered %d status calls; log resumed when space was freed",
		connects, lostWhileFull, calls)
	if st.ViolationsLogLost < lostWhileFull {
		t.Errorf("lost count went down: %d -> %d", lostWhileFull, st.ViolationsLogLost)
	}
}

// fill writes path until its file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// wholeLines checks that every line of a violations log is a JSON object.
func wholeLines(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s line %d is not whole: %q", path, n, sc.Text())
		}
	}
}

// TestFaultSecondDaemonRefused starts a second daemon on the first one's
// pins (its own socket, state and policy): it must exit 1 with one line,
// and the first must keep enforcing and accepting changes.
func TestFaultSecondDaemonRefused(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	w.start()
	w.ok("deny", "--name", "client", client)

	dir := t.TempDir()
	second := exec.Command(exewall, "--socket", filepath.Join(dir, "second.sock"), "daemon", "--cgroup", w.cgroup,
		"--pin-dir", w.pinDir, "--state-dir", filepath.Join(dir, "state"), "--policy", filepath.Join(dir, "policy.yaml"))
	var out, errOut bytes.Buffer
	second.Stdout, second.Stderr = &out, &errOut
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		second.Process.Kill()
		<-exited
		t.Fatal("second daemon on the same pins is still running")
	}
	msg := refusedResult(t, result{out.String(), errOut.String(), second.ProcessState.ExitCode()}, []string{"daemon (second)"})
	if !strings.Contains(msg, "another exewall daemon is using "+w.pinDir) {
		t.Errorf("refusal does not say why: %q (%v)", msg, err)
	}
	// The first keeps working: enforcing, answering, applying changes.
	w.wantAttachedOnce()
	w.wantVerdict(client, port, "EPERM")
	w.ok("rm", "client")
	w.wantVerdict(client, port, "ok")
	w.ok("deny", "--name", "client", client)
	w.wantVerdict(client, port, "EPERM")
	t.Logf("second daemon refused: %s", strings.TrimSpace(msg))
}

// pinNames lists the pin dir.
func (w *world) pinNames() []string {
	entries, _ := os.ReadDir(w.pinDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestFaultPinsRemoved removes every pin behind the daemon's back (and
// the pin dir itself): enforcement holds, the periodic sync pins
// everything again and logs it, and a restarted daemon adopts the restored
// pins: attached once, counters continued.
func TestFaultPinsRemoved(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	w.start("--sync-interval", "300ms")
	w.ok("deny", "--name", "client", client)
	w.wantVerdict(client, port, "EPERM")
	if len(w.pinNames()) == 0 {
		t.Fatal("nothing pinned")
	}
	w.removePins()
	log, _ := os.ReadFile(w.logFile)
	if !strings.Contains(string(log), "tamper") || !strings.Contains(string(log), "was removed") {
		t.Errorf("removal not logged as tamper")
	}
	w.wantVerdict(client, port, "EPERM")
	denied := w.status().RuleCounter["client"].Denied

	// The restored pins are what a restarted daemon adopts.
	w.stop(syscall.SIGTERM)
	w.wantVerdict(client, port, "EPERM")
	w.start("--sync-interval", "300ms")
	w.wantAttachedOnce()
	w.wantVerdict(client, port, "EPERM")
	if got := w.status().RuleCounter["client"].Denied; got != denied+2 {
		t.Fatalf("counter %d after restart, want %d (continued from the restored pins)", got, denied+2)
	}
	for _, name := range []string{"exe_rules", "counters"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(w.pinDir, name), nil)
		if err != nil {
			t.Fatalf("restored pin %s: %v", name, err)
		}
		m.Close()
	}
}

// removePins removes every pin and the pin dir, as `rm -r` would, and
// waits for the daemon's periodic sync to pin everything again.
func (w *world) removePins() {
	w.t.Helper()
	before := w.pinNames()
	for _, n := range before {
		if err := os.Remove(filepath.Join(w.pinDir, n)); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := os.Remove(w.pinDir); err != nil {
		w.t.Fatal(err)
	}
	w.waitFor("periodic sync restores every pin", func() bool { return reflect.DeepEqual(w.pinNames(), before) })
}

// TestFaultPinDirRecreatedStillLocked: after the pin dir was removed and
// re-created by the periodic sync, a second daemon on it must still be
// refused. (The lock was once an flock on the pin dir itself and went with
// the removed directory; it now lives under /run/exewall.)
func TestFaultPinDirRecreatedStillLocked(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	w.start("--sync-interval", "300ms")
	w.ok("deny", "--name", "client", client)
	w.removePins()

	dir := t.TempDir()
	sock := filepath.Join(dir, "second.sock")
	second := exec.Command(exewall, "--socket", sock, "daemon", "--cgroup", w.cgroup, "--pin-dir", w.pinDir,
		"--state-dir", filepath.Join(dir, "state"), "--policy", filepath.Join(dir, "policy.yaml"), "--sync-interval", "0")
	var errOut bytes.Buffer
	second.Stderr = &errOut
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { second.Wait(); close(exited) }()
	running := false
	w.waitFor("second daemon refused or running", func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		_, err := os.Stat(sock)
		running = err == nil
		return running
	})
	if !running {
		if code := second.ProcessState.ExitCode(); code != 1 || !strings.Contains(errOut.String(), "another exewall daemon") {
			t.Fatalf("second daemon: exit %d: %s", code, errOut.String())
		}
		w.wantVerdict(client, port, "EPERM")
		return
	}
	// It runs, with its own (empty) policy in force over the first's.
	_, during := w.connect(client, "tcp4", port, 1)
	second.Process.Signal(syscall.SIGTERM)
	<-exited
	time.Sleep(2 * time.Second) // several periodic syncs of the first daemon
	_, after := w.connect(client, "tcp4", port, 1)
	// Restarting the first daemon puts its policy back.
	w.stop(syscall.SIGTERM)
	w.start("--sync-interval", "300ms")
	w.wantVerdict(client, port, "EPERM")
	t.Fatalf("after the pin dir was removed and re-created by the periodic sync, a second daemon on it was not refused; "+
		"the denied client got %s while it ran and %s 2 s after it stopped", during, after)
}

// TestFaultUpgradeNoGap replaces a running daemon with another binary on
// the same pins, the pinned maps made "older" in between (as a release
// with another map layout would leave them), while client processes keep
// making denied connects: none may get through at any moment.
func TestFaultUpgradeNoGap(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	client := clientCopy(t, dir, "client")
	port := listen(t)
	// The running release: a copy of the binary (another file, as after a
	// package upgrade the new binary is).
	old := filepath.Join(dir, "exewall-old")
	data, err := os.ReadFile(exewall)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(old, data, 0o755)
	newBin := exewall
	exewall = old
	w.start()
	w.ok("deny", "--name", "client", client)
	w.wantVerdict(client, port, "EPERM")
	exewall = newBin
	defer func() { exewall = newBin }()

	loop := w.startDenyLoop(client, port, 3, 200)
	w.waitFor("denied connects under way", func() bool { return loop.tries.Load() > 1000 })
	w.stop(syscall.SIGTERM)
	// An older release's layout: counter_names with another value size.
	// (Only if the old daemon left its pins: if it did not, the leaks
	// below say what that cost.)
	if err := os.Remove(filepath.Join(w.pinDir, "counter_names")); err == nil {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "counter_names", Type: ebpf.Hash, KeySize: 4, ValueSize: 32, MaxEntries: 16})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Pin(filepath.Join(w.pinDir, "counter_names")); err != nil {
			t.Fatal(err)
		}
		m.Close()
	} else {
		t.Errorf("the old daemon left no pins: %v", err)
	}
	w.start()
	startTries := loop.tries.Load()
	w.waitFor("denied connects after the upgrade", func() bool { return loop.tries.Load() > startTries+1000 })
	tries, leaks := loop.finish(t)
	if leaks > 0 {
		t.Fatalf("%d of %d denied connects got through during the upgrade", leaks, tries)
	}
	w.wantAttachedOnce()
	w.wantVerdict(client, port, "EPERM")
	if rules := w.fileMatchesLs(); len(rules) != 1 {
		t.Fatalf("rules after the upgrade: %+v", rules)
	}
	log, _ := os.ReadFile(w.logFile)
	if !strings.Contains(string(log), "older layout") {
		t.Errorf("the new daemon did not migrate the older layout")
	}
	t.Logf("%d denied connects from 3 looping processes across the upgrade, none got through", tries)
}

// TestCountersSurviveOtherRuleEdits: a rule's kernel counter is exact while
// other rules come and go through the CLI in the same daemon's lifetime
// (the soak test's writers do this all the time).
func TestCountersSurviveOtherRuleEdits(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	w.start()
	w.ok("deny", "--name", "client", client)
	w.connect(client, "tcp4", port, 100)
	w.ok("deny", "--name", "other", "/usr/local/bin/exewall-e2e-other")
	w.ok("rm", "other")
	w.connect(client, "tcp4", port, 100)
	if got := w.status().RuleCounter["client"].Denied; got != 200 {
		t.Fatalf("kernel counter of rule client is %d after another rule was added and removed, want 200", got)
	}
}
