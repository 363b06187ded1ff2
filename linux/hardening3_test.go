//go:build linux

package linux

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sabotaged reports whether EXEWALL_TEST_SABOTAGE names what.
func sabotaged(what string) bool {
	for _, w := range strings.Split(os.Getenv("EXEWALL_TEST_SABOTAGE"), ",") {
		if w == what {
			return true
		}
	}
	return false
}

// nobody is the unprivileged attacker of issue 13.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// An unprivileged user who creates the pin dir first (the bpffs root is 1777
// here) must not get a daemon that keeps its pins there: they could unlink
// the links later. A root-owned 0700 dir is accepted.
func TestPinDirOwnedByAnotherUserIsRefused(t *testing.T) {
	requireKernel(t)
	if sabotaged("pindir") {
		old := pinDirCheck
		pinDirCheck = func(string) error { return nil }
		t.Cleanup(func() { pinDirCheck = old })
	}
	fi, err := os.Stat("/sys/fs/bpf")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("/sys/fs/bpf", randName("exewall-hardening-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	if fi.Mode()&0o002 == 0 {
		// Make the situation: a directory the attacker owns.
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chown(dir, 65534, 65534)
	} else {
		mk := exec.Command("mkdir", "-m", "0777", dir)
		mk.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		if out, err := mk.CombinedOutput(); err != nil {
			t.Fatalf("attacker mkdir: %v %s", err, out)
		}
	}
	cg := scratchCgroup(t)
	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: dir, DetachOnClose: true})
	if err == nil {
		b.Close()
		t.Fatal("daemon accepted a pin dir owned by uid 65534 with mode 0777")
	}
	if !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("error does not say who owns the pin dir: %v", err)
	}
	// Control: the same dir, root's and 0700, is accepted.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err = New(context.Background(), Config{Cgroup: cg, PinDir: dir, DetachOnClose: true})
	if err != nil {
		t.Fatalf("root's 0700 pin dir refused: %v", err)
	}
	b.Close()
}
