//go:build linux

package kerneltest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// The client protocol. A copy of a test binary (Copy) started with ClientEnv
// set reads a JSON list of Attempts on stdin, makes them in order, and
// writes a JSON list of Outcomes, one each, on stdout. Steps "ready" and
// "wait" let a test hold a client in the middle of its list (StartClient).
// It talks only to loopback and to the documentation and benchmarking
// ranges the tests' network namespaces use (see NewHost): a broken setup
// cannot send test traffic anywhere else.
const ClientEnv = "EXEWALL_TEST_CLIENT"

// Attempt is one step of a client.
type Attempt struct {
	Proto string `json:"proto,omitempty"` // tcp | udp
	// connect | sendto | fastopen (TCP sendto with MSG_FASTOPEN) |
	// socket (create Kind only) | hold (TCP connect, keep it) |
	// use-held (write and read on the held connection) | thread (connect
	// from a thread that is not the thread group leader) |
	// tcploop, loop (time connect+close, or UDP sends: ns each in Err) |
	// ready (print "ready") | wait (block until the test writes a line) |
	// sleep (Millis)
	Op   string `json:"op"`
	Kind string `json:"kind,omitempty"` // for socket: raw | ping | mptcp | sctp
	Sock int    `json:"sock,omitempty"` // 4 or 6: socket family (6 with a v4 address uses the mapped form)
	Addr string `json:"addr,omitempty"`
	Port uint16 `json:"port,omitempty"`
	// Repeat makes a connect or sendto this many times (or, with Until,
	// until that time, in unix nanoseconds), to ports Port to
	// Port+Spread-1 in turn; Outcome.Counts says how each ended.
	Repeat int   `json:"repeat,omitempty"`
	Until  int64 `json:"until,omitempty"`
	Spread int   `json:"spread,omitempty"`
	Millis int   `json:"millis,omitempty"`
}

// Outcome is what the client saw: Errno "" when the kernel let the call
// through (ECONNREFUSED and friends count as through: the firewall did not
// stop it).
type Outcome struct {
	Errno  string         `json:"errno"`
	Err    string         `json:"err,omitempty"`
	Counts map[string]int `json:"counts,omitempty"` // by errno name, "ok" for through
}

// Denied reports whether the attempt failed with EPERM.
func (o Outcome) Denied() bool { return o.Errno == "EPERM" }

// Main is the test package's TestMain: a client copy runs its attempts and
// exits; the tests run otherwise.
func Main(m *testing.M) {
	if os.Getenv(ClientEnv) != "" {
		os.Exit(clientMain())
	}
	os.Exit(m.Run())
}

// ClientOpts are how a client is started.
type ClientOpts struct {
	Cred *syscall.Credential // run as this user
}

// command prepares exe as a client inside cgroup cg.
func command(exe, cg string, opts []ClientOpts) (*exec.Cmd, func(), error) {
	cgfd, err := os.Open(cg)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if len(opts) > 0 && opts[0].Cred != nil {
		cmd.SysProcAttr.Credential = opts[0].Cred
	}
	return cmd, func() { cgfd.Close() }, nil
}

// Run runs exe inside cgroup cg with attempts and returns its pid and
// outcomes; it does not need a testing.T (goroutines, the benchmark).
func Run(exe, cg string, attempts []Attempt, opts ...ClientOpts) (int, []Outcome, error) {
	cmd, done, err := command(exe, cg, opts)
	if err != nil {
		return 0, nil, err
	}
	defer done()
	args, _ := json.Marshal(attempts)
	cmd.Stdin = bytes.NewReader(args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, nil, fmt.Errorf("client %s: %v: %s", exe, err, stderr.String())
	}
	var out []Outcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return 0, nil, fmt.Errorf("client output %q: %v", stdout.String(), err)
	}
	return cmd.Process.Pid, out, nil
}

// RunClient is Run that fails the test on error.
func RunClient(t testing.TB, exe, cg string, attempts []Attempt, opts ...ClientOpts) (int, []Outcome) {
	t.Helper()
	pid, out, err := Run(exe, cg, attempts, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pid, out
}

// Live is a client the test talks to while it runs.
type Live struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// StartClient starts exe in cg with attempts that may include "ready" and
// "wait" steps; WaitReady and Proceed drive them. The client is killed when
// the test ends.
func StartClient(t testing.TB, exe, cg string, attempts []Attempt) *Live {
	t.Helper()
	cmd, done, err := command(exe, cg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	stdin, _ := cmd.StdinPipe()
	pipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	args, _ := json.Marshal(attempts)
	stdin.Write(append(args, '\n'))
	return &Live{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(pipe)}
}

// Pid is the client's process id.
func (c *Live) Pid() int { return c.cmd.Process.Pid }

// WaitReady waits for the client's next "ready" step.
func (c *Live) WaitReady(t testing.TB) {
	t.Helper()
	line, err := c.stdout.ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("client not ready: %q %v", line, err)
	}
}

// Continue ends the client's "wait" step and lets it go on to its next
// "ready" (WaitReady) or "wait" step.
func (c *Live) Continue() { c.stdin.Write([]byte("\"go\"\n")) }

// Proceed ends the client's "wait" step and returns all its outcomes.
func (c *Live) Proceed(t testing.TB) []Outcome {
	t.Helper()
	c.stdin.Write([]byte("\"go\"\n"))
	var out []Outcome
	if err := json.NewDecoder(c.stdout).Decode(&out); err != nil {
		t.Fatalf("client result: %v", err)
	}
	c.cmd.Wait()
	return out
}
