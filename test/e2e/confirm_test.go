//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestApplyConfirmWithin(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	client := clientCopy(t, dir, "client")
	port := listen(t)
	w.start()
	before, _ := os.ReadFile(w.policy)

	deny := filepath.Join(dir, "deny.yaml")
	os.WriteFile(deny, []byte("default: allow\nrules:\n  - name: client\n    exe: "+client+"\n    action: deny\n"), 0o644)

	// Not confirmed: rolled back by itself.
	out := w.ok("apply", "-f", deny, "--confirm-within", "1s")
	if !strings.Contains(out, "exewall confirm") {
		t.Errorf("apply output does not say how to confirm:\n%s", out)
	}
	w.wantVerdict(client, port, "EPERM")
	w.refused("deny", "/usr/bin/curl") // no edits while a rollback is pending
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := w.connect(client, "tcp4", port, 1); got == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unconfirmed apply was not rolled back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The rollback puts the kernel back, then the file: wait for both.
	for {
		after, _ := os.ReadFile(w.policy)
		if string(after) == string(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy file not restored:\n%s", after)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.fileMatchesLs()

	// Confirmed: stays.
	w.ok("apply", "-f", deny, "--confirm-within", "1m")
	w.ok("confirm")
	w.refused("confirm")
	w.wantVerdict(client, port, "EPERM")
	w.fileMatchesLs()

	// A daemon killed before the confirmation rolls back when it restarts.
	w.ok("rm", "client")
	w.ok("apply", "-f", deny, "--confirm-within", "1h")
	w.stop(syscall.SIGKILL)
	w.start()
	w.wantVerdict(client, port, "ok")
	if rules := w.fileMatchesLs(); len(rules) != 0 {
		t.Fatalf("restart kept the unconfirmed policy: %+v", rules)
	}
}

func TestSIGHUPReload(t *testing.T) {
	w := newWorld(t)
	client := clientCopy(t, t.TempDir(), "client")
	port := listen(t)
	// The file watch may see the edit before the signal does; either way
	// it must be in force, and SIGHUP must reload without harm.
	w.start()
	data, _ := os.ReadFile(w.policy)
	text := strings.Replace(string(data), "rules: []", "rules:\n  - name: client\n    exe: "+client+"\n    action: deny", 1)
	if err := os.WriteFile(w.policy, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	w.d.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := w.connect(client, "tcp4", port, 1); got == "EPERM" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("edited policy not in force after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// An invalid edit is refused and the policy in force stays.
	os.WriteFile(w.policy, []byte("default: nope\n"), 0o644)
	w.d.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	w.wantVerdict(client, port, "EPERM")
	if rules := w.rules(); len(rules) != 1 {
		t.Fatalf("rules after invalid edit: %+v", rules)
	}
	log, _ := os.ReadFile(w.logFile)
	if !strings.Contains(string(log), "policy file refused") {
		t.Errorf("invalid edit not logged:\n%s", log)
	}
}
