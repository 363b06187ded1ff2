//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
	"github.com/exewall/exewall/test/kerneltest"
)

// world is one daemon's surroundings: scratch cgroup, pin dir, state dir,
// socket and policy file, all removed at the end of the test.
type world struct {
	t        *testing.T
	dir      string
	cgroup   string
	pinDir   string
	stateDir string
	socket   string
	policy   string
	logFile  string
	d        *exec.Cmd
	exited   chan struct{}
	// wrap, when set, is a command line the daemon runs under (it gets
	// exewall and its arguments appended).
	wrap []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	kerneltest.Require(t)
	w := &world{t: t, dir: t.TempDir()}
	// Cleanups run last first: the daemon stops, its pins go, then the cgroup.
	w.cgroup = kerneltest.Cgroup(t)
	w.pinDir = kerneltest.PinDir(t, func(dir string) error { return linux.Reset(context.Background(), linux.Config{PinDir: dir}) })
	w.stateDir = filepath.Join(w.dir, "state")
	w.socket = filepath.Join(w.dir, "run", "exewall.sock")
	w.policy = filepath.Join(w.dir, "etc", "policy.yaml")
	w.logFile = filepath.Join(w.dir, "daemon.log")
	t.Cleanup(w.cleanup)
	return w
}

func (w *world) cleanup() {
	w.stop(syscall.SIGTERM)
	if w.t.Failed() {
		if data, err := os.ReadFile(w.logFile); err == nil {
			w.t.Logf("daemon log:\n%s", data)
		}
	}
}

// start runs `exewall daemon` and waits for its READY=1 on a fake
// NOTIFY_SOCKET, which is how systemd would learn it is up.
func (w *world) start(extra ...string) {
	t := w.t
	t.Helper()
	notify := filepath.Join(w.dir, kerneltest.Name("notify-"))
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	defer os.Remove(notify)
	log, err := os.OpenFile(w.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	args := append([]string{"--socket", w.socket, "daemon", "--cgroup", w.cgroup, "--pin-dir", w.pinDir,
		"--state-dir", w.stateDir, "--policy", w.policy}, extra...)
	if len(w.wrap) > 0 {
		w.d = exec.Command(w.wrap[0], append(append(w.wrap[1:], exewall), args...)...)
	} else {
		w.d = exec.Command(exewall, args...)
	}
	w.d.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	w.d.Stdout, w.d.Stderr = log, log
	if err := w.d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	w.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(w.d)

	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := nc.Read(buf)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	select {
	case msg := <-got:
		if !strings.Contains(msg, "READY=1") {
			data, _ := os.ReadFile(w.logFile)
			t.Fatalf("daemon did not notify READY=1: %q\n%s", msg, data)
		}
	case <-exited:
		data, _ := os.ReadFile(w.logFile)
		t.Fatalf("daemon exited before it was ready:\n%s", data)
	}
	if fi, err := os.Stat(w.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v, want mode 0600", w.socket, fi, err)
	}
}

// stop sends sig to the daemon (only the one this test started) and waits.
func (w *world) stop(sig syscall.Signal) {
	if w.d == nil {
		return
	}
	w.d.Process.Signal(sig)
	select {
	case <-w.exited:
	case <-time.After(10 * time.Second):
		w.d.Process.Kill()
		<-w.exited
		w.t.Errorf("daemon did not stop on %v", sig)
	}
	w.d = nil
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the exewall CLI against the world's daemon.
func (w *world) cli(args ...string) result {
	return w.cliAs(nil, args...)
}

func (w *world) cliAs(cred *syscall.Credential, args ...string) result {
	w.t.Helper()
	cmd := exec.Command(exewall, append([]string{"--socket", w.socket}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("run exewall %v: %v", args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// ok runs the CLI and fails the test unless it exits 0.
func (w *world) ok(args ...string) string {
	w.t.Helper()
	r := w.cli(args...)
	if r.code != 0 {
		w.t.Fatalf("exewall %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// refused runs the CLI and fails the test unless it exits 1 with one line
// on stderr, which it returns.
func (w *world) refused(args ...string) string {
	w.t.Helper()
	return refusedResult(w.t, w.cli(args...), args)
}

func refusedResult(t *testing.T, r result, args []string) string {
	t.Helper()
	if r.code != 1 {
		t.Fatalf("exewall %s: exit %d, want 1 (stdout %q, stderr %q)", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "exewall: ") {
		t.Fatalf("exewall %s: stderr is not one `exewall: ` line: %q", strings.Join(args, " "), r.stderr)
	}
	return r.stderr
}

// rules returns `exewall ls --json`.
func (w *world) rules() []engine.RuleView {
	w.t.Helper()
	var rules []engine.RuleView
	if err := json.Unmarshal([]byte(w.ok("ls", "--json")), &rules); err != nil {
		w.t.Fatalf("ls --json: %v", err)
	}
	return rules
}

// fileMatchesLs checks that the policy file on disk says what `ls` says.
func (w *world) fileMatchesLs() []engine.RuleView {
	w.t.Helper()
	rules := w.rules()
	data, err := os.ReadFile(w.policy)
	if err != nil {
		w.t.Fatal(err)
	}
	p, err := engine.Parse(data)
	if err != nil {
		w.t.Fatalf("policy file does not parse: %v\n%s", err, data)
	}
	if onDisk := engine.ViewPolicy(p).Rules; !reflect.DeepEqual(onDisk, rules) {
		w.t.Fatalf("policy file has %+v, ls has %+v", onDisk, rules)
	}
	return rules
}

func clientCopy(t *testing.T, dir, name string) string {
	t.Helper()
	return kerneltest.Copy(t, dir, name)
}

// connect runs the client exe inside the scratch cgroup: count attempts of
// proto (tcp4, tcp6, udp4) to loopback port. It returns the client's pid
// and what it saw: for one attempt "ok" or the errno name, for more the
// counts, "map[EPERM:12 ok:3]".
func (w *world) connect(exe, proto string, port, count int) (int, string) {
	w.t.Helper()
	pid, out, err := w.runClient(exe, proto, port, count)
	if err != nil {
		w.t.Fatal(err)
	}
	return pid, out
}

// runClient is connect without failing the test (for goroutines).
func (w *world) runClient(exe, proto string, port, count int) (int, string, error) {
	a := kerneltest.Attempt{Proto: "tcp", Op: "connect", Sock: 4, Addr: "127.0.0.1", Port: uint16(port), Repeat: count}
	switch proto {
	case "tcp6":
		a.Sock, a.Addr = 6, "::1"
	case "udp4":
		a.Proto, a.Op = "udp", "sendto"
	}
	pid, out, err := kerneltest.Run(exe, w.cgroup, []kerneltest.Attempt{a})
	if err != nil {
		return 0, "", err
	}
	if count == 1 {
		return pid, word(out[0]), nil
	}
	return pid, fmt.Sprint(out[0].Counts), nil
}

// word is "ok" for an attempt the kernel let through, else the errno name.
func word(o kerneltest.Outcome) string {
	switch {
	case o.Errno != "":
		return o.Errno
	case o.Err != "":
		return o.Err
	}
	return "ok"
}

// listen accepts TCP connections on loopback until the test ends.
func listen(t *testing.T) int { t.Helper(); return int(kerneltest.ListenLoopback(t)) }

// attached returns the names of the programs attached to the cgroup, as
// bpftool (an independent witness) sees them.
func (w *world) attached() []string {
	w.t.Helper()
	out, err := exec.Command("bpftool", "cgroup", "show", w.cgroup, "-j").Output()
	if err != nil {
		w.t.Fatalf("bpftool cgroup show: %v", err)
	}
	var progs []struct {
		Name       string `json:"name"`
		AttachType string `json:"attach_type"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil // bpftool prints nothing when nothing is attached
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		w.t.Fatalf("bpftool output %q: %v", out, err)
	}
	var names []string
	for _, p := range progs {
		names = append(names, p.Name)
	}
	return names
}

// violations returns `exewall violations --json`.
func (w *world) violations(args ...string) []map[string]any {
	w.t.Helper()
	out := w.ok(append([]string{"violations", "--json"}, args...)...)
	var vs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			w.t.Fatalf("violations line %q: %v", line, err)
		}
		vs = append(vs, v)
	}
	return vs
}

func lookPath(t *testing.T, name string) { t.Helper(); kerneltest.RequireTool(t, name) }

var execCommand = exec.Command
