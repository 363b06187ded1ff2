//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

var hookProgs = []string{"exewall_connect4", "exewall_connect6", "exewall_sendmsg4", "exewall_sendmsg6"}

func (w *world) wantAttachedOnce() {
	w.t.Helper()
	got := w.attached()
	count := map[string]int{}
	for _, n := range got {
		count[n]++
	}
	for _, n := range hookProgs {
		if count[n] != 1 {
			w.t.Fatalf("%s attached %d times to %s (all: %v)", n, count[n], w.cgroup, got)
		}
	}
	// Any other hook the backend uses (sock_create where the kernel
	// allows it) must not be attached twice either.
	for n, c := range count {
		if strings.HasPrefix(n, "exewall_") && c != 1 {
			w.t.Fatalf("%s attached %d times to %s (all: %v)", n, c, w.cgroup, got)
		}
	}
}

func (w *world) wantVerdict(exe string, port int, want string) int {
	w.t.Helper()
	pid, got := w.connect(exe, "tcp4", port, 1)
	if got != want {
		w.t.Fatalf("%s connecting to 127.0.0.1:%d: got %s, want %s", filepath.Base(exe), port, got, want)
	}
	return pid
}

func TestDaemonEndToEnd(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	blocked := clientCopy(t, dir, "blocked")
	free := clientCopy(t, dir, "free")
	port := listen(t)

	w.start()
	w.wantAttachedOnce()

	t.Run("default policy written", func(t *testing.T) {
		data, err := os.ReadFile(w.policy)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "#") || !strings.Contains(string(data), "default: allow") {
			t.Fatalf("default policy file:\n%s", data)
		}
		if rules := w.fileMatchesLs(); len(rules) != 0 {
			t.Fatalf("rules %v", rules)
		}
	})

	t.Run("usage errors are one line, exit 1", func(t *testing.T) {
		w.refused("nosuchcommand")
		w.refused("deny")
		w.refused("deny", blocked, "--audit")
		w.refused("rule", "add", "--action", "deny", "--exe", blocked, "--allow", "10.0.0.0/8 port 80,443")
		if rules := w.rules(); len(rules) != 0 {
			t.Fatalf("a refused command changed the policy: %v", rules)
		}
	})

	t.Run("add, list, remove", func(t *testing.T) {
		w.ok("deny", "--name", "blocked", blocked)
		w.fileMatchesLs()
		w.ok("rule", "add", "--name", "office", "--action", "deny", "--allow", "203.0.113.0/24 port 443 tcp",
			"--allow", "2001:db8::/32 port 443", "--exe", "/usr/bin/rclone")
		w.fileMatchesLs()
		w.ok("local-only", "--audit", "/usr/bin/wget")
		w.fileMatchesLs()
		w.ok("mode", "enforce")
		w.ok("default", "allow")
		rules := w.fileMatchesLs()
		want := []engine.RuleView{
			{Name: "blocked", Exe: blocked, Action: "deny"},
			{Name: "office", Exe: "/usr/bin/rclone", Action: "deny", Allow: []string{"203.0.113.0/24 port 443 tcp", "2001:db8::/32 port 443"}},
			{Name: "wget", Exe: "/usr/bin/wget", Action: "local-only", Audit: true},
		}
		if !reflect.DeepEqual(rules, want) {
			t.Fatalf("ls --json = %+v, want %+v", rules, want)
		}
		w.ok("rm", "wget")
		w.ok("rm", "/usr/bin/rclone")
		w.refused("rm", "wget")
		if rules := w.fileMatchesLs(); len(rules) != 1 {
			t.Fatalf("after rm: %+v", rules)
		}
	})

	t.Run("denied connect is EPERM and reported", func(t *testing.T) {
		pid := w.wantVerdict(blocked, port, "EPERM")
		w.wantVerdict(free, port, "ok")
		var got map[string]any
		for deadline := time.Now().Add(5 * time.Second); got == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, v := range w.violations("--since", "1m") {
				if v["pid"] == float64(pid) {
					got = v
				}
			}
		}
		if got == nil {
			t.Fatalf("no violation for pid %d", pid)
		}
		want := map[string]any{"uid": float64(0), "comm": "blocked", "exe": blocked, "rule": "blocked", "verdict": "deny",
			"proto": "tcp", "family": "ipv4", "daddr": "127.0.0.1", "dport": float64(port)}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("violation %s = %v, want %v", k, got[k], v)
			}
		}
		ts, err := time.Parse(time.RFC3339Nano, got["time"].(string))
		if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
			t.Errorf("violation time %v: %v", got["time"], err)
		}
		var st engine.Status
		if err := json.Unmarshal([]byte(w.ok("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Backend != "ebpf" || st.AttachPoint != w.cgroup || st.Rules != 1 || st.Counters.Denied == 0 ||
			st.RuleCounter["blocked"].Denied == 0 || !hasAll(st.Hooks, "connect4", "connect6", "sendmsg4", "sendmsg6") {
			t.Fatalf("status %+v", st)
		}
		// The violations log under the state dir has it too (flushed within a second).
		time.Sleep(1500 * time.Millisecond)
		data, _ := os.ReadFile(filepath.Join(w.stateDir, "violations.log"))
		if !strings.Contains(string(data), `"exe":"`+blocked+`"`) {
			t.Errorf("violations.log lacks the event:\n%s", data)
		}
	})

	t.Run("apply invalid then valid", func(t *testing.T) {
		before, _ := os.ReadFile(w.policy)
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("default: allow\nrules:\n  - name: free\n    exe: "+free+"\n    action: deny\n    allow:\n      - 10.0.0.0/8 port 99999\n"), 0o644)
		msg := w.refused("apply", "-f", bad)
		if !strings.Contains(msg, "line 7") {
			t.Errorf("refusal does not name line 7: %q", msg)
		}
		if after, _ := os.ReadFile(w.policy); string(after) != string(before) {
			t.Fatalf("invalid apply changed the policy file")
		}
		w.wantVerdict(free, port, "ok")

		good := filepath.Join(dir, "good.yaml")
		text := "# applied by the e2e test\ndefault: allow\nrules:\n  - name: free\n    exe: " + free + "\n    action: deny\n  - name: blocked\n    exe: " + blocked + "\n    action: deny\n"
		os.WriteFile(good, []byte(text), 0o644)
		w.ok("apply", "-f", good)
		if after, _ := os.ReadFile(w.policy); string(after) != text {
			t.Fatalf("policy file after apply:\n%s", after)
		}
		w.fileMatchesLs()
		w.wantVerdict(free, port, "EPERM")
		w.ok("rm", "free")
		w.wantVerdict(free, port, "ok")
		w.fileMatchesLs()
	})

	t.Run("hand edit of the file is followed", func(t *testing.T) {
		data, _ := os.ReadFile(w.policy)
		edited := strings.Replace(string(data), "default: allow", "default: allow\nmode: audit", 1)
		tmp := w.policy + ".new"
		os.WriteFile(tmp, []byte(edited), 0o644)
		os.Rename(tmp, w.policy) // as editors and config tools do
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			var st engine.Status
			json.Unmarshal([]byte(w.ok("status", "--json")), &st)
			if st.Mode == "audit" {
				w.wantVerdict(blocked, port, "ok") // audited, not blocked
				w.ok("mode", "enforce")
				w.wantVerdict(blocked, port, "EPERM")
				w.fileMatchesLs()
				return
			}
		}
		t.Fatal("daemon did not pick up the edited file")
	})

	t.Run("non-root caller refused", func(t *testing.T) {
		nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
		before, _ := os.ReadFile(w.policy)
		refusedResult(t, w.cliAs(nobody, "deny", free), []string{"deny (as nobody)"})
		refusedResult(t, w.cliAs(nobody, "ls"), []string{"ls (as nobody)"})
		// Even with the socket opened up by mistake, SO_PEERCRED refuses.
		for _, p := range []string{w.dir, filepath.Dir(w.socket)} {
			os.Chmod(p, 0o755)
		}
		os.Chmod(w.socket, 0o666)
		r := w.cliAs(nobody, "default", "deny")
		os.Chmod(w.socket, 0o600)
		msg := refusedResult(t, r, []string{"default deny (as nobody, socket 0666)"})
		if !strings.Contains(msg, "only root") {
			t.Errorf("refusal: %q", msg)
		}
		if after, _ := os.ReadFile(w.policy); string(after) != string(before) {
			t.Fatal("a non-root caller changed the policy")
		}
		w.wantVerdict(free, port, "ok")
	})

	t.Run("SIGKILL keeps enforcement, restart adopts it", func(t *testing.T) {
		before := w.rules()
		w.stop(syscall.SIGKILL)
		w.wantVerdict(blocked, port, "EPERM")
		w.wantAttachedOnce()
		w.start()
		w.wantAttachedOnce()
		w.wantVerdict(blocked, port, "EPERM")
		w.wantVerdict(free, port, "ok")
		if after := w.fileMatchesLs(); !reflect.DeepEqual(after, before) {
			t.Fatalf("restart changed the rules: %+v -> %+v", before, after)
		}
	})

	t.Run("SIGTERM keeps enforcement", func(t *testing.T) {
		w.stop(syscall.SIGTERM)
		w.wantVerdict(blocked, port, "EPERM")
		w.start()
		w.wantAttachedOnce()
		w.fileMatchesLs()
	})

	t.Run("sync repairs a detached program and a deleted map entry", func(t *testing.T) {
		r := w.cli("sync", "--json")
		if r.code != 0 {
			t.Fatalf("sync on a clean kernel: %s", r.stderr)
		}
		// A program detached behind the daemon's back. (Whether the
		// connect is then let through depends on which other hooks the
		// backend uses, e.g. sock_create, so only the repair is checked.)
		w.detachConnect4()
		w.wantSyncRepairs()
		w.wantAttachedOnce()
		w.wantVerdict(blocked, port, "EPERM")

		// Map entries deleted behind its back: every executable rule entry,
		// so the policy generation in force loses its own (the idle one's
		// are rescanned at the next apply, see Backend.Sync).
		// exe_rules is sized to the policy: the pinned map is an array
		// whose slot 0 holds the hash in force (linux/sized.go).
		outer, err := ebpf.LoadPinnedMap(filepath.Join(w.pinDir, "exe_rules"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer outer.Close()
		var id uint32
		if err := outer.Lookup(uint32(0), &id); err != nil {
			t.Fatal(err)
		}
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			t.Fatal(err)
		}
		var keys [][]byte
		key, val := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		for it := m.Iterate(); it.Next(&key, &val); {
			keys = append(keys, append([]byte(nil), key...))
		}
		if len(keys) == 0 {
			t.Fatal("exe_rules is empty")
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
		w.wantSyncRepairs()
		w.wantVerdict(blocked, port, "EPERM")

		// The hash in force taken out of its slot: the programs would
		// read an empty map until sync puts it back.
		if err := outer.Delete(uint32(0)); err != nil {
			t.Fatal(err)
		}
		w.wantSyncRepairs()
		w.wantVerdict(blocked, port, "EPERM")
	})

	t.Run("doctor", func(t *testing.T) {
		out := w.ok("doctor", "--cgroup", w.cgroup, "--pin-dir", w.pinDir)
		if !strings.Contains(out, "exewall_connect4") || !strings.Contains(out, "cgroup v2") {
			t.Errorf("doctor:\n%s", out)
		}
	})

	t.Run("reset refuses while the daemon runs, then removes everything", func(t *testing.T) {
		w.refused("reset", "--pin-dir", w.pinDir)
		w.stop(syscall.SIGTERM)
		w.ok("reset", "--pin-dir", w.pinDir)
		if got := w.attached(); len(got) != 0 {
			t.Fatalf("still attached after reset: %v", got)
		}
		if _, err := os.Stat(w.pinDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("pin dir left: %v", err)
		}
		w.wantVerdict(blocked, port, "ok")
	})
}

func (w *world) wantSyncRepairs() {
	w.t.Helper()
	var resp struct {
		Drift []engine.Drift `json:"drift"`
	}
	out := w.ok("sync", "--json")
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		w.t.Fatal(err)
	}
	if len(resp.Drift) == 0 {
		w.t.Fatalf("sync found nothing: %s", out)
	}
	for _, d := range resp.Drift {
		if !d.Repaired {
			w.t.Errorf("not repaired: %s", d.What)
		}
	}
	if out := w.ok("sync"); !strings.Contains(out, "in sync") {
		w.t.Errorf("second sync: %s", out)
	}
}

func execOut(name string, args ...string) (string, error) {
	out, err := execCommand(name, args...).CombinedOutput()
	return string(out), err
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// detachConnect4 detaches the connect4 link the daemon pinned, as an
// intruder with bpftool would.
func (w *world) detachConnect4() {
	w.t.Helper()
	if out, err := execOut("bpftool", "link", "detach", "pinned", filepath.Join(w.pinDir, "link_connect4")); err != nil {
		w.t.Fatalf("bpftool link detach: %v: %s", err, out)
	}
	for _, n := range w.attached() {
		// Attached again already is fine when the daemon's own periodic
		// check saw the detach and repaired it (it can be that quick).
		if log, _ := os.ReadFile(w.logFile); n == "exewall_connect4" && !strings.Contains(string(log), "connect4 program was detached") {
			w.t.Fatal("connect4 program still attached after detach")
		}
	}
}
