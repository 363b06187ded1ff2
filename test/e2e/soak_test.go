//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

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

// TestSoak runs exewall under sustained load: a denied-connect storm from
// several client processes in the scratch cgroup together with concurrent
// CLI readers and writers, for EXEWALL_SOAK_DURATION (default 60s). It
// checks the kernel's counters exactly, bounds the daemon's memory and
// measures API latency, and prints the figures docs/RELIABILITY.md quotes.
func TestSoak(t *testing.T) {
	const (
		stormProcs = 4
		spread     = 2048 // destination ports per client: up to 4 x 2048 distinct events a second
		readers    = 3
		rssBoundKB = 256 << 10 // generous: the daemon idles near 30 MiB
		p99Bound   = 2 * time.Second
	)
	dur := duration(t)
	w := newWorld(t)
	// The storm client: a copy of this binary, its own executable identity.
	storm := clientCopy(t, t.TempDir(), "storm")
	os.MkdirAll(filepath.Dir(w.policy), 0o755)
	os.WriteFile(w.policy, []byte("default: allow\nrules:\n  - name: storm\n    exe: "+storm+"\n    action: deny\n"), 0o644)
	port := listen(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w.start("--sync-interval", "5s", "--metrics-addr", metricsAddr)
	d := w.d
	c := client.New(w.socket)
	getStatus := func() (engine.Status, error) { return c.Status(context.Background()) }
	st0, _ := getStatus()
	rss0 := kerneltest.ProcKB(d.Process.Pid, "VmRSS")

	start := time.Now()
	until := start.Add(dur)
	var wg sync.WaitGroup
	var denied, leaked atomic.Int64
	stormErr := make(chan error, stormProcs)
	for range stormProcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out, err := kerneltest.Run(storm, w.cgroup, []kerneltest.Attempt{{Proto: "tcp", Op: "connect", Sock: 4,
				Addr: "127.0.0.1", Port: uint16(port), Spread: spread, Until: until.UnixNano()}})
			if err != nil {
				stormErr <- fmt.Errorf("storm client: %v", err)
				return
			}
			for word, n := range out[0].Counts {
				if word == "EPERM" {
					denied.Add(int64(n))
				} else {
					leaked.Add(int64(n))
				}
			}
		}()
	}

	cli := func(args ...string) error {
		out, err := exec.Command(exewall, append([]string{"--socket", w.socket}, args...)...).CombinedOutput()
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
		if kb := int64(kerneltest.ProcKB(d.Process.Pid, "VmRSS")); kb > rssMax.Load() {
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
	_, logLines := countLogged(t, filepath.Join(w.stateDir, "violations.log"))
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
	if data, _ := os.ReadFile(w.policy); !bytes.Contains(data, []byte("name: storm")) || bytes.Contains(data, []byte("soak-")) {
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
