//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFollowMetricsTamper covers --follow, /metrics and the daemon's own
// periodic tamper check.
func TestFollowMetricsTamper(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "followed")
	port := listen(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w.start("--metrics-addr", metrics, "--log-format", "json", "--sync-interval", "300ms")
	w.ok("deny", client)

	follow := exec.Command(exewall, "--socket", w.socket, "violations", "--follow", "--json")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond) // let the follower subscribe
	pid, _ := w.connect(client, "tcp4", port, 1)
	select {
	case line := <-lines:
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil || v["pid"] != float64(pid) || v["verdict"] != "deny" {
			t.Fatalf("followed %q (%v), want pid %d", line, err, pid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--follow printed nothing")
	}

	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`exewall_connections_total{rule="followed",verdict="deny"} 1`, "exewall_events_lost_total 0",
		`exewall_violations_total{verdict="deny"} 1`, "exewall_rules 1", `exewall_hook_active{hook="connect4"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Someone detaches a program; the periodic check puts it back and
	// logs a tamper event without anyone running `exewall sync`.
	// The sync runs every 300 ms and may repair the detach before anyone
	// looks at the attached programs: its log line is the proof.
	if out, err := execOut("bpftool", "link", "detach", "pinned", filepath.Join(w.pinDir, "link_connect4")); err != nil {
		t.Fatalf("bpftool link detach: %v: %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		log, _ := os.ReadFile(w.logFile)
		if tamperLogged(string(log), "connect4 program was detached") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tamper event logged:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.wantAttachedOnce()
	w.wantVerdict(client, port, "EPERM")
	resp, err = http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "exewall_tamper_events_total 0") || !strings.Contains(string(body), "exewall_tamper_events_total") {
		t.Errorf("tamper not counted in /metrics")
	}
}

// tamperLogged reports a periodic sync's tamper line (JSON log) naming what.
func tamperLogged(log, what string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"msg":"tamper`) && strings.Contains(line, `"by":"periodic sync"`) && strings.Contains(line, what) {
			return true
		}
	}
	return false
}
