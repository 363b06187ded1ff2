//go:build linux

package soak

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/linux"
)

// The test binary doubles as the storm client (see clientMain).
const clientEnv = "EXEWALL_SOAK_CLIENT"

var exewall string

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) != "" {
		clientMain()
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "exewall-soak-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	exewall = filepath.Join(dir, "exewall")
	cmd := exec.Command("go", "build", "-o", exewall, "github.com/exewall/exewall/cmd/exewall")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build exewall:", err)
		return 1
	}
	return m.Run()
}

// clientMain makes TCP connects to 127.0.0.1, ports PORT to PORT+SPREAD-1
// in turn, until the deadline (unix nanoseconds) and prints how many ended
// how: "EPERM 123 ok 0". Distinct destinations are distinct events (the
// kernel folds only repeats of one attempt within a second into one).
func clientMain() {
	var port, spread int
	var until int64
	fmt.Sscan(os.Args[1], &port)
	fmt.Sscan(os.Args[2], &spread)
	fmt.Sscan(os.Args[3], &until)
	denied, other := 0, 0
	for i := 0; ; i++ {
		if i%256 == 0 && time.Now().UnixNano() > until {
			break
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			other++
			continue
		}
		sa := &unix.SockaddrInet4{Port: port + i%spread, Addr: [4]byte{127, 0, 0, 1}}
		err = unix.Connect(fd, sa)
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			denied++
		} else {
			other++
		}
	}
	fmt.Printf("EPERM %d ok %d\n", denied, other)
}

func requireRoot(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "the soak test loads eBPF programs and needs root"
	} else if _, err := linux.CgroupMount(); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("soak test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

func randName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func duration(t *testing.T) time.Duration {
	d := 60 * time.Second
	if v := os.Getenv("EXEWALL_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("EXEWALL_SOAK_DURATION=%q: want a positive duration such as 60s", v)
		}
	}
	return d
}

// latencies collects call durations safely from several goroutines.
type latencies struct {
	mu  sync.Mutex
	d   []time.Duration
	err []string
}

func (l *latencies) add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
	if err != nil && len(l.err) < 10 {
		l.err = append(l.err, err.Error())
	}
}

func (l *latencies) pct() (n int, p50, p99, max time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return len(s), at(0.50), at(0.99), s[len(s)-1]
}

func rssKB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	return 0
}

// TestSoak: see the package comment.
func TestSoak(t *testing.T) {
	requireRoot(t)
	const (
		stormProcs = 4
		spread     = 2048 // destination ports per client: up to 4 x 2048 distinct events a second
		readers    = 3
		rssBoundKB = 256 << 10 // generous: the daemon idles near 30 MiB
		p99Bound   = 2 * time.Second
	)
	dur := duration(t)
	root, _ := linux.CgroupMount()
	dir := t.TempDir()
	cgroup := filepath.Join(root, randName("exewall-soak-"))
	if err := os.Mkdir(cgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	pinDir := filepath.Join("/sys/fs/bpf", randName("exewall-soak-"))
	socket := filepath.Join(dir, "run", "exewall.sock")
	policy := filepath.Join(dir, "policy.yaml")
	logFile := filepath.Join(dir, "daemon.log")

	// The storm client: a copy of this binary, its own executable identity.
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	storm := filepath.Join(dir, "storm")
	if err := os.WriteFile(storm, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(policy, []byte("default: allow\nrules:\n  - name: storm\n    exe: "+storm+"\n    action: deny\n"), 0o644)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ml, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ml.Addr().String()
	ml.Close()
	logf, _ := os.Create(logFile)
	defer logf.Close()
	d := exec.Command(exewall, "--socket", socket, "daemon", "--cgroup", cgroup, "--pin-dir", pinDir,
		"--state-dir", filepath.Join(dir, "state"), "--policy", policy, "--sync-interval", "5s", "--metrics-addr", metricsAddr)
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { d.Wait(); close(exited) }()
	t.Cleanup(func() {
		d.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			d.Process.Kill()
			<-exited
		}
		if t.Failed() {
			data, _ := os.ReadFile(logFile)
			t.Logf("daemon log (tail):\n%s", tail(data, 4000))
		}
		if err := linux.Reset(context.Background(), linux.Config{PinDir: pinDir}); err != nil {
			t.Errorf("reset %s: %v", pinDir, err)
		}
		removeCgroup(t, cgroup)
	})
	c := client.New(socket)
	getStatus := func() (engine.Status, error) { return c.Status(context.Background()) }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := getStatus(); err == nil {
			break
		}
		select {
		case <-exited:
			data, _ := os.ReadFile(logFile)
			t.Fatalf("daemon exited:\n%s", data)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not answer")
		}
	}
	st0, _ := getStatus()
	rss0 := rssKB(d.Process.Pid)

	start := time.Now()
	until := start.Add(dur)
	var wg sync.WaitGroup
	var denied, leaked atomic.Int64
	stormErr := make(chan error, stormProcs)
	cg, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	for range stormProcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := exec.Command(storm, fmt.Sprint(port), fmt.Sprint(spread), fmt.Sprint(until.UnixNano()))
			c.Env = append(os.Environ(), clientEnv+"=1")
			c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
			out, err := c.Output()
			if err != nil {
				stormErr <- fmt.Errorf("storm client: %v", err)
				return
			}
			var dn, ok int64
			if _, err := fmt.Sscanf(string(out), "EPERM %d ok %d", &dn, &ok); err != nil {
				stormErr <- fmt.Errorf("storm client printed %q", out)
				return
			}
			denied.Add(dn)
			leaked.Add(ok)
		}()
	}

	cli := func(args ...string) error {
		out, err := exec.Command(exewall, append([]string{"--socket", socket}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("exewall %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var api, cliLat latencies
	var rssMax atomic.Int64
	var writes atomic.Int64
	stop := make(chan struct{})
	var bg sync.WaitGroup
	loop := func(f func(i int)) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	// API latency, measured on the socket itself.
	loop(func(int) {
		t0 := time.Now()
		_, err := getStatus()
		api.add(time.Since(t0), err)
		time.Sleep(20 * time.Millisecond)
	})
	// CLI readers.
	reads := [][]string{{"status", "--json"}, {"ls", "--json"}, {"violations", "--json", "--since", "2s"}}
	for r := range readers {
		loop(func(i int) {
			t0 := time.Now()
			err := cli(reads[(i+r)%len(reads)]...)
			cliLat.add(time.Since(t0), err)
		})
	}
	// A CLI writer: rules come and go, each change an apply in the kernel.
	loop(func(i int) {
		name := fmt.Sprintf("soak-%d", i%5)
		t0 := time.Now()
		err := cli("rule", "add", "--name", name, "--action", "deny", "--allow", "10.0.0.0/8 port 443 tcp", "--exe", "/usr/local/bin/"+name)
		if err == nil {
			err = cli("rm", name)
		}
		cliLat.add(time.Since(t0), err)
		if err == nil {
			writes.Add(2)
		}
	})
	// Daemon memory.
	loop(func(int) {
		if kb := int64(rssKB(d.Process.Pid)); kb > rssMax.Load() {
			rssMax.Store(kb)
		}
		time.Sleep(250 * time.Millisecond)
	})

	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	bg.Wait()
	select {
	case err := <-stormErr:
		t.Fatal(err)
	default:
	}
	time.Sleep(2 * time.Second) // let the reader drain the ring buffer
	st, err := getStatus()
	if err != nil {
		t.Fatal(err)
	}

	// Events stand for repeated attempts (Violation.Count); /metrics adds
	// up the counts of every event received (only the storm is denied).
	// The tail of a burst reaches the daemon a moment after the storm: wait
	// for the counts to settle (a bound against a hang, not a performance
	// limit).
	reported := scrapeDenied(t, metricsAddr)
	for deadline := time.Now().Add(15 * time.Second); reported < uint64(denied.Load()) && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		reported = scrapeDenied(t, metricsAddr)
	}
	if st, err = getStatus(); err != nil {
		t.Fatal(err)
	}
	_, logLines := countLogged(t, filepath.Join(dir, "state", "violations.log"))
	n, p50, p99, pmax := api.pct()
	cn, c50, c99, cmax := cliLat.pct()
	events := st.Violations - st0.Violations
	lost := st.EventsLost - st0.EventsLost
	summary := fmt.Sprintf("soak %v: %d denied connects (%.0f/s) from %d processes to %d ports, %d got through; kernel counted %d; "+
		"daemon received %d events (%.0f/s) standing for %d attempts, %d lost; violations log: %d lines kept (rotated), %d lost; "+
		"daemon RSS %d kB at start, max %d kB; API status calls %d: p50 %v p99 %v max %v; "+
		"CLI calls %d (%d rule writes): p50 %v p99 %v max %v",
		elapsed.Round(time.Second), denied.Load(), float64(denied.Load())/elapsed.Seconds(), stormProcs, spread, leaked.Load(),
		st.RuleCounter["storm"].Denied, events, float64(events)/elapsed.Seconds(), reported, lost, logLines, st.ViolationsLogLost,
		rss0, rssMax.Load(), n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), pmax.Round(time.Microsecond),
		cn, writes.Load(), c50.Round(time.Millisecond), c99.Round(time.Millisecond), cmax.Round(time.Millisecond))
	t.Log(summary)
	fmt.Println(summary)

	if leaked.Load() != 0 {
		t.Errorf("%d denied connects got through", leaked.Load())
	}
	if got := st.RuleCounter["storm"].Denied; got != uint64(denied.Load()) {
		t.Errorf("kernel counted %d denied, the clients saw %d EPERM", got, denied.Load())
	}
	if st.RuleCounter["storm"].Allowed != 0 {
		t.Errorf("kernel allowed %d storm connects", st.RuleCounter["storm"].Allowed)
	}
	if lost == 0 && st.ViolationsLogLost == 0 && reported != uint64(denied.Load()) {
		t.Errorf("with no event lost, the events stand for %d attempts, want %d", reported, denied.Load())
	}
	if reported > uint64(denied.Load()) {
		t.Errorf("events stand for %d attempts, more than the %d made", reported, denied.Load())
	}
	if rssMax.Load() > rssBoundKB {
		t.Errorf("daemon RSS reached %d kB, bound %d kB", rssMax.Load(), rssBoundKB)
	}
	if n == 0 || p99 > p99Bound {
		t.Errorf("API: %d calls, p99 %v (bound %v)", n, p99, p99Bound)
	}
	for _, l := range []*latencies{&api, &cliLat} {
		if len(l.err) > 0 {
			t.Errorf("failed calls: %s", strings.Join(l.err, "; "))
		}
	}
	if writes.Load() == 0 {
		t.Errorf("no rule writes went through")
	}
	if data, _ := os.ReadFile(policy); !bytes.Contains(data, []byte("name: storm")) || bytes.Contains(data, []byte("soak-")) {
		t.Errorf("policy file after the soak:\n%s", data)
	}
}

// scrapeDenied reads exewall_violations_total{verdict="deny"}.
func scrapeDenied(t *testing.T, addr string) uint64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `exewall_violations_total{verdict="deny"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return uint64(f)
		}
	}
	t.Fatal("/metrics has no exewall_violations_total{verdict=\"deny\"}")
	return 0
}

// countLogged sums the count of every storm line in a violations log
// (and its rotated files).
func countLogged(t *testing.T, path string) (attempts, lines uint64) {
	t.Helper()
	files, _ := filepath.Glob(path + ".*")
	for _, p := range append(files, path) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var v engine.Violation
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Errorf("%s: %q: %v", p, sc.Text(), err)
				continue
			}
			if v.Rule == "storm" {
				attempts += max(v.Count, 1)
				lines++
			}
		}
		f.Close()
	}
	return attempts, lines
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func removeCgroup(t *testing.T, dir string) {
	for range 100 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		// Only our own storm clients can be in the scratch cgroup.
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
