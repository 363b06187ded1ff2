//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// realRun is one run of a real Debian program inside the scratch cgroup and
// the test network namespace.
type realRun struct {
	prog string
	args []string
}

// realWorkload is what the test's "user" does: fetch a page with curl and
// wget by name (getaddrinfo, DNS over UDP to the namespace's resolver), ask
// the resolver with dig, and open a TCP connection with nc.
var realWorkload = []realRun{
	{"curl", []string{"-sS", "-o", "/dev/null", "--max-time", "5", "http://web.exewall.test/"}},
	{"wget", []string{"-q", "-O", "/dev/null", "-T", "5", "-t", "1", "http://web.exewall.test/"}},
	{"dig", []string{"+short", "+tries=1", "+time=3", "@" + netDNS, "web.exewall.test", "A"}},
	{"nc", []string{"-z", "-w", "3", netEcho, fmt.Sprint(echoPort)}},
}

// run runs r to completion in cgroup cg and namespace n; it returns the
// combined output and the error.
func (n *testNet) run(t *testing.T, cg string, r realRun) (string, error) {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, r.prog}, r.args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// runAll runs the workload rounds times; every run must succeed.
func (n *testNet) runAll(t *testing.T, cg string, rounds int) int {
	t.Helper()
	runs := 0
	for range rounds {
		for _, r := range realWorkload {
			out, err := n.run(t, cg, r)
			if err != nil {
				t.Fatalf("%s %s: %v: %s", r.prog, strings.Join(r.args, " "), err, out)
			}
			if r.prog == "dig" && strings.TrimSpace(out) != netWeb {
				t.Fatalf("dig answered %q, want %s", out, netWeb)
			}
			runs++
		}
	}
	return runs
}

// TestRealProgramsLearnThenEnforce: a learning session over hundreds of
// short-lived runs of real programs learns each one by its path, credits
// nothing to another program, and allows no UDP that was never sent; the
// learned policy, applied with `default: deny`, lets the same workload run
// without a single violation and denies a destination never seen.
func TestRealProgramsLearnThenEnforce(t *testing.T) {
	progs := map[string]string{}
	for _, p := range []string{"curl", "wget", "dig", "nc", "ip"} {
		lookPath(t, p)
		path, _ := exec.LookPath(p)
		progs[p] = path
	}
	w := newWorld(t)
	n := newTestNet(t)
	n.serve(t)
	w.start()

	learned := filepath.Join(w.dir, "learned.yaml")
	learn := exec.Command(exewall, "--socket", w.socket, "learn", "--out", learned)
	var learnErr bytes.Buffer
	learn.Stdout, learn.Stderr = &learnErr, &learnErr
	if err := learn.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if learn.ProcessState == nil {
			learn.Process.Kill()
			learn.Wait()
		}
	}()
	waitLog(t, w, "learning: every connection attempt is reported")

	const rounds = 60
	runs := n.runAll(t, w.cgroup, rounds)
	// getaddrinfo with two addresses connects a UDP socket to each to sort
	// them, sending nothing: that must not become a UDP allow.
	for range 20 {
		r := realRun{"curl", []string{"-sS", "-o", "/dev/null", "--max-time", "5", "http://multi.exewall.test/"}}
		if out, err := n.run(t, w.cgroup, r); err != nil {
			t.Fatalf("curl multi: %v: %s", err, out)
		}
		runs++
	}
	t.Logf("%d runs while learning", runs)
	time.Sleep(3 * time.Second) // repeats folded in the kernel are reported by the sweep
	learn.Process.Signal(syscall.SIGINT)
	if err := learn.Wait(); err != nil {
		t.Fatalf("learn: %v: %s", err, learnErr.String())
	}
	data, err := os.ReadFile(learned)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learned policy:\n%s", data)
	p, err := engine.Parse(data)
	if err != nil {
		t.Fatalf("learned policy does not parse: %v", err)
	}
	if bytes.Contains(data, []byte("Not learned: attempts")) {
		t.Errorf("attempts were not attributed to a program:\n%s", data)
	}

	// Every program by its path, and nothing else.
	want := map[string][]string{
		"curl": {"198.51.100.10/32 port 80 tcp", "198.51.100.11/32 port 80 tcp", "198.51.100.53/32 port 53 udp"},
		"wget": {"198.51.100.10/32 port 80 tcp", "198.51.100.53/32 port 53 udp"},
		"dig":  {"198.51.100.53/32 port 53 udp"},
		"nc":   {fmt.Sprintf("198.51.100.20/32 port %d tcp", echoPort)},
	}
	found := map[string]bool{}
	for _, r := range p.Rules {
		prog := ""
		for name, path := range progs {
			if sameFile(r.Exe, path) {
				prog = name
			}
		}
		if prog == "" || prog == "ip" {
			t.Errorf("rule %q for %s: not a program of the workload (an attempt credited to the wrong program)", r.Name, r.Exe)
			continue
		}
		found[prog] = true
		for _, d := range r.Allow {
			if d.Proto == engine.ProtoUDP && (d.PortLo != 53 || d.Prefix != netip.MustParsePrefix(netDNS+"/32")) {
				t.Errorf("%s: learned UDP that was never sent: %v", prog, d)
			}
			if !allowedIn(d.String(), want[prog]) {
				t.Errorf("%s: learned %v, which it never reached (want only %v)", prog, d, want[prog])
			}
		}
	}
	for prog := range want {
		if !found[prog] {
			t.Errorf("%s was not learned", prog)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Enforce the learned policy with nothing else allowed.
	strict := strings.Replace(string(data), "\ndefault: allow\n", "\ndefault: deny\n", 1)
	if strict == string(data) {
		t.Fatalf("learned policy has no `default: allow` line to tighten")
	}
	strictFile := filepath.Join(w.dir, "strict.yaml")
	if err := os.WriteFile(strictFile, []byte(strict), 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("apply", "-f", strictFile)
	since := time.Now()
	n.runAll(t, w.cgroup, 5)
	time.Sleep(3 * time.Second)
	if vs := w.violations("--since", since.Format(time.RFC3339Nano)); len(vs) != 0 {
		t.Fatalf("the learned policy denied the workload it learned: %v", vs)
	}

	// A destination never seen while learning is denied, and reported.
	since = time.Now()
	out, err := n.run(t, w.cgroup, realRun{"curl", []string{"-sS", "-o", "/dev/null", "--max-time", "5", "http://new.exewall.test/"}})
	if err == nil {
		t.Fatalf("curl reached a destination it never reached while learning: %s", out)
	}
	var denied bool
	for deadline := time.Now().Add(5 * time.Second); !denied && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, v := range w.violations("--since", since.Format(time.RFC3339Nano)) {
			denied = denied || (v["daddr"] == netNew && v["dport"] == float64(80) && v["verdict"] == "deny" && sameFile(fmt.Sprint(v["exe"]), progs["curl"]))
		}
	}
	if !denied {
		t.Fatalf("no violation for curl to %s:80 (curl said %s)", netNew, out)
	}
}

func allowedIn(entry string, want []string) bool {
	for _, w := range want {
		if entry == w {
			return true
		}
	}
	return false
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// waitLog waits for the daemon's log to contain s.
func waitLog(t *testing.T, w *world, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if data, _ := os.ReadFile(w.logFile); bytes.Contains(data, []byte(s)) {
			return
		}
	}
	data, _ := os.ReadFile(w.logFile)
	t.Fatalf("the daemon never logged %q:\n%s", s, data)
}
