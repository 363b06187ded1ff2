//go:build linux

package linux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// requireKernel skips a kernel test when it cannot run here, and fails it
// instead under CI (CI=true), where a silent skip would hide a broken setup.
func requireKernel(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "kernel tests need root (run `sudo make test`)"
	} else if _, err := CgroupMount(); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kernel test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

func randName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// scratchCgroup creates a cgroup under the v2 mount and removes it, and any
// processes the test left in it, at the end of the test.
func scratchCgroup(t *testing.T) string {
	t.Helper()
	root, err := CgroupMount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, randName("exewall-test-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create scratch cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	return dir
}

func removeCgroup(t *testing.T, dir string) {
	// Children first (tests may nest cgroups).
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(t, filepath.Join(dir, e.Name()))
		}
	}
	for i := 0; i < 100; i++ {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		// Only our own client processes can be in a scratch cgroup.
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			var pid int
			fmt.Sscan(f, &pid)
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("scratch cgroup %s could not be removed", dir)
}

type testBackend struct {
	*Backend
	cgroup string
	pinDir string
}

// newTestBackend loads the datapath with a scratch pin dir attached to cg,
// and at cleanup checks that nothing is left pinned.
func newTestBackend(t *testing.T, cg string, mod ...func(*Config)) *testBackend {
	t.Helper()
	cfg := Config{Cgroup: cg, PinDir: filepath.Join("/sys/fs/bpf", randName("exewall-test-")), DetachOnClose: true,
		WatchInterval: 200 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("load backend: %v", err)
	}
	if strings.Contains(os.Getenv("EXEWALL_TEST_SABOTAGE"), "stat") {
		b.resolver.Close()
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
		if _, err := os.Stat(cfg.PinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s left behind", cfg.PinDir)
		}
	})
	return &testBackend{Backend: b, cgroup: cg, pinDir: cfg.PinDir}
}

func (tb *testBackend) apply(t *testing.T, p *engine.Policy) {
	t.Helper()
	if err := tb.Apply(context.Background(), p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tb.sabotage()
}

// sabotage removes protections named in EXEWALL_TEST_SABOTAGE (comma
// separated: detach, sock_create, exec, loader, sock_destroy) after an apply, to
// show that the tests guarding them fail without them.
func (tb *testBackend) sabotage() {
	for _, what := range strings.Split(os.Getenv("EXEWALL_TEST_SABOTAGE"), ",") {
		switch what {
		case "detach", "sock_create":
			for name, l := range tb.links {
				if what == "detach" || name == what {
					l.Unpin()
					l.Close()
					delete(tb.links, name)
				}
			}
		case "exec":
			// The exec hook and the identity hooks beside it (fork, exit,
			// loader reads): identities then come from mm->exe_file when
			// a process is first seen.
			if tb.execLink != nil {
				tb.execLink.Unpin()
				tb.execLink.Close()
				tb.execLink = nil
			}
			for _, l := range tb.identLinks {
				l.Unpin()
				l.Close()
			}
			tb.identLinks = nil
		case "loader":
			var k datapathFileId
			for tb.objs.Loaders.NextKey(nil, &k) == nil {
				tb.objs.Loaders.Delete(k)
			}
		case "sock_destroy":
			tb.sockIter = nil
		case "stat":
			tb.resolver.Close() // falls back to stat()
		default:
			tb.sabotageGuard(what)
		}
	}
}

// clientCopy puts a copy of the test binary at dir/name: a new file, hence a
// new executable identity.
func clientCopy(t *testing.T, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	copyFile(t, self, dst)
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

type clientOpts struct {
	uid, gid uint32
	asUser   bool
}

// runClient runs exe inside cgroup cg and returns its pid and outcomes.
func runClient(t *testing.T, exe, cg string, attempts []attempt, opts ...clientOpts) (int, []outcome) {
	t.Helper()
	args, _ := json.Marshal(attempts)
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(exe)
	cmd.Stdin = bytes.NewReader(args)
	cmd.Env = append(os.Environ(), clientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if len(opts) > 0 && opts[0].asUser {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: opts[0].uid, Gid: opts[0].gid}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("client %s: %v: %s", exe, err, stderr.String())
	}
	var out []outcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client output %q: %v", stdout.String(), err)
	}
	return cmd.Process.Pid, out
}

// listenLoopback starts TCP listeners on 127.0.0.1 and [::1] with one port
// number and accepts (and closes) until the test ends.
func listenLoopback(t *testing.T) uint16 {
	t.Helper()
	for try := 0; try < 20; try++ {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err != nil {
			l4.Close()
			continue
		}
		for _, l := range []net.Listener{l4, l6} {
			go acceptAll(l)
			t.Cleanup(func() { l.Close() })
		}
		return uint16(port)
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// waitViolation waits for the violation of pid that matches, failing after
// a few seconds.
func waitViolation(t *testing.T, b *Backend, match func(engine.Violation) bool) engine.Violation {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case v := <-b.Violations():
			if match(v) {
				return v
			}
		case <-timeout:
			t.Fatal("no matching violation within 5s")
		}
	}
}

// drainViolations collects the violations that arrive until the stream has
// been quiet for a moment.
func drainViolations(b *Backend, quiet time.Duration) []engine.Violation {
	var out []engine.Violation
	for {
		select {
		case v := <-b.Violations():
			out = append(out, v)
		case <-time.After(quiet):
			return out
		}
	}
}

// liveClient is a client the test talks to while it runs.
type liveClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	done   chan []outcome
}

// startClient starts exe in cg with attempts that may include "ready" and
// "wait" steps; waitReady and proceed drive them.
func startClient(t *testing.T, exe, cg string, attempts []attempt) *liveClient {
	t.Helper()
	args, _ := json.Marshal(attempts)
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), clientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	stdin, _ := cmd.StdinPipe()
	pipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	stdin.Write(args)
	c := &liveClient{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(pipe), done: make(chan []outcome, 1)}
	return c
}

func (c *liveClient) waitReady(t *testing.T) {
	t.Helper()
	line, err := c.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("client not ready: %q %v", line, err)
	}
}

func (c *liveClient) proceed(t *testing.T) []outcome {
	t.Helper()
	c.stdin.Write([]byte("\"go\"\n"))
	var out []outcome
	if err := json.NewDecoder(c.stdout).Decode(&out); err != nil {
		t.Fatalf("client result: %v", err)
	}
	c.cmd.Wait()
	return out
}

// listenEcho starts a TCP listener on 127.0.0.1 that echoes and keeps
// connections open until the test ends.
func listenEcho(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(c, c)
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
