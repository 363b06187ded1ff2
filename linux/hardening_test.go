//go:build linux

package linux

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

func denyRule(name, exe string) engine.Rule {
	return engine.Rule{Name: name, Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}
}

// allowPingSockets lets every gid create ping sockets for the test, and puts
// the machine's setting back afterwards.
func allowPingSockets(t *testing.T) {
	t.Helper()
	const knob = "/proc/sys/net/ipv4/ping_group_range"
	old, err := os.ReadFile(knob)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no %s under CI: %v", knob, err)
		}
		t.Skipf("no %s: %v", knob, err)
	}
	if err := os.WriteFile(knob, []byte("0 2147483647"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0o644) })
}

// TestSocketKindsRefusedAtCreation: raw and ping sockets never reach the
// connect/sendmsg hooks on their unconnected sends, so a restricted program
// may not create them at all; MPTCP and SCTP likewise. An unrestricted
// program still can.
func TestSocketKindsRefusedAtCreation(t *testing.T) {
	requireKernel(t)
	allowPingSockets(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	denied, allowed := clientCopy(t, dir, "denied"), clientCopy(t, dir, "allowed")
	lan := clientCopy(t, dir, "lan")
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", denied),
		{Name: "lan", Selector: engine.Selector{Exe: lan}, Action: engine.ActionLocalOnly}}})
	kinds := []attempt{{Op: "socket", Kind: "raw", Sock: 4}, {Op: "socket", Kind: "ping", Sock: 4},
		{Op: "socket", Kind: "ping", Sock: 6}, {Op: "socket", Kind: "raw", Sock: 6}, {Op: "socket", Kind: "mptcp", Sock: 4}, {Op: "socket", Kind: "sctp", Sock: 4}}
	_, okOut := runClient(t, allowed, cg, kinds)
	pid, out := runClient(t, denied, cg, kinds)
	_, lanOut := runClient(t, lan, cg, kinds)
	tested := 0
	for i, k := range kinds {
		if okOut[i].Errno != "" {
			t.Logf("%s/%d sockets unavailable here (%s): not tested", k.Kind, k.Sock, okOut[i].Errno)
			continue
		}
		tested++
		if !out[i].denied() || !lanOut[i].denied() {
			t.Errorf("%s/%d socket: denied exe %+v, local-only exe %+v; want EPERM for both", k.Kind, k.Sock, out[i], lanOut[i])
		}
	}
	if tested < 3 {
		t.Fatalf("only %d socket kinds could be tested", tested)
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.PID == uint32(pid) })
	if v.Rule != "d" || v.Verdict != engine.VerdictDeny {
		t.Errorf("event %+v", v)
	}
}

// TestTCPFastOpenIsJudged: sendto(MSG_FASTOPEN) connects without connect().
func TestTCPFastOpenIsJudged(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "tfo")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}})
	_, out := runClient(t, exe, cg, []attempt{
		{Proto: "tcp", Op: "fastopen", Sock: 4, Addr: "127.0.0.1", Port: port},
		{Proto: "tcp", Op: "fastopen", Sock: 6, Addr: "::1", Port: port},
	})
	for i, o := range out {
		if !o.denied() {
			t.Errorf("fastopen %d: %+v, want EPERM", i, o)
		}
	}
}

// TestReplacedBinaryCoveredFromFirstRun replaces a denied binary the way a
// package manager does (new file, renamed over the path) and runs it at
// once: the exec hook must cover it before userspace re-resolves (the
// watch is slowed to an hour here so only the hook can).
func TestReplacedBinaryCoveredFromFirstRun(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, func(c *Config) { c.WatchInterval = time.Hour })
	dir := t.TempDir()
	exe := clientCopy(t, dir, "app")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("app", exe), denyRule("later", filepath.Join(dir, "later"))}})

	clientCopy(t, dir, ".app.dpkg-new")
	if err := os.Rename(filepath.Join(dir, ".app.dpkg-new"), exe); err != nil {
		t.Fatal(err)
	}
	if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
		t.Errorf("replaced binary at its first run: %+v, want EPERM", out[0])
	}
	// A rule whose file did not exist at apply time: covered at first exec.
	later := clientCopy(t, dir, "later")
	if _, out := runClient(t, later, cg, loopbackTCP(port)); !out[0].denied() {
		t.Errorf("file created after the rule, first run: %+v, want EPERM", out[0])
	}
	other := clientCopy(t, dir, "other")
	if _, out := runClient(t, other, cg, loopbackTCP(port)); out[0].denied() {
		t.Errorf("an unrelated new file was denied")
	}
}

// TestReplacedBinaryAdoptedWithinASecond: without the exec hook's help, the
// watch re-resolves a replaced binary within one second.
func TestReplacedBinaryAdoptedWithinASecond(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, func(c *Config) { c.WatchInterval = time.Second })
	dir := t.TempDir()
	exe := clientCopy(t, dir, "app")
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("app", exe)}})
	old, _, _ := b.Identify(exe)
	clientCopy(t, dir, ".new")
	os.Rename(filepath.Join(dir, ".new"), exe)
	fresh, _, _ := b.Identify(exe)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for {
		b.mu.Lock()
		ids := b.ids.exe.list(exe)
		b.mu.Unlock()
		if len(ids) == 2 && ids[0] == old && ids[1] == fresh {
			return // the new file is covered and the old one still is
		}
		if time.Now().After(deadline) {
			t.Fatalf("identities after 1.5s: %v (old %v, new %v)", ids, old, fresh)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeletedBinaryStaysCovered runs a denied program and deletes its file
// while it runs: it stays denied. Once it has exited and its inode is freed,
// new files are created until one reuses the inode number (ext4 reuses them
// readily): that new program must not be mistaken for the old one.
func TestDeletedBinaryStaysCovered(t *testing.T) {
	requireKernel(t)
	mnt := loopMount(t, "ext4")
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, mnt, "app")
	var st unix.Stat_t
	unix.Stat(exe, &st)
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("app", exe)}})

	c := startClient(t, exe, cg, []attempt{{Op: "ready"}, {Op: "wait"}, loopbackTCP(port)[0]})
	c.waitReady(t)
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	b.refresh() // what the watch does: the path is gone, the rule stays
	if out := c.proceed(t); !out[2].denied() {
		t.Errorf("running program whose binary was deleted: %+v, want EPERM", out[2])
	}

	reused := ""
	for i := 0; i < 500 && reused == ""; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("new%d", i))
		os.WriteFile(p, nil, 0o755)
		var nst unix.Stat_t
		unix.Stat(p, &nst)
		if nst.Ino == st.Ino {
			reused = p
			copyFile(t, os.Args[0], p) // same inode, now a runnable program
		}
	}
	if reused == "" {
		t.Fatalf("no new file reused inode %d; the test cannot check reuse", st.Ino)
	}
	id, _, _ := b.Identify(reused)
	t.Logf("inode %d reused by %s (%v)", st.Ino, reused, id)
	if _, out := runClient(t, reused, cg, loopbackTCP(port)); out[0].denied() {
		t.Errorf("%s reuses the deleted binary's inode number and was mistaken for it", reused)
	}
}

// TestFilesystems: the identity the datapath reads matches what the
// resolver computes on each filesystem kind.
func TestFilesystems(t *testing.T) {
	requireKernel(t)
	for _, fs := range []string{"tmpfs", "ext4", "btrfs"} {
		t.Run(fs, func(t *testing.T) {
			mnt := loopMount(t, fs)
			cg := scratchCgroup(t)
			b := newTestBackend(t, cg)
			if fs == "btrfs" {
				// A subvolume: inode numbers restart there, and stat()
				// reports a device of its own.
				sub := filepath.Join(mnt, "sub")
				if out, err := exec.Command("btrfs", "subvolume", "create", sub).CombinedOutput(); err != nil {
					t.Fatalf("btrfs subvolume: %v: %s", err, out)
				}
				mnt = sub
			}
			exe := clientCopy(t, mnt, "app")
			other := clientCopy(t, mnt, "other")
			port := listenLoopback(t)
			b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("app", exe)}})
			if _, out := runClient(t, exe, cg, loopbackTCP(port)); !out[0].denied() {
				t.Errorf("%s: rule exe %+v, want EPERM", fs, out[0])
			}
			if _, out := runClient(t, other, cg, loopbackTCP(port)); out[0].denied() {
				t.Errorf("%s: other exe denied", fs)
			}
		})
	}
}

// loopMount mounts a fresh filesystem of kind fs (tmpfs, or ext4/btrfs on a
// loop device backed by a temp file) and removes it at the end.
func loopMount(t *testing.T, fs string) string {
	t.Helper()
	mnt := t.TempDir()
	if fs == "tmpfs" {
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
		return mnt
	}
	mkfs := "mkfs." + fs
	if _, err := exec.LookPath(mkfs); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing under CI (install it in .ci/run)", mkfs)
		}
		t.Skipf("%s not installed", mkfs)
	}
	img := filepath.Join(t.TempDir(), fs+".img")
	f, _ := os.Create(img)
	f.Truncate(300 << 20)
	f.Close()
	if out, err := exec.Command(mkfs, "-q", img).CombinedOutput(); err != nil && !strings.Contains(string(out), "") {
		t.Fatalf("%s: %v: %s", mkfs, err, out)
	} else if err != nil {
		if out, err := exec.Command(mkfs, img).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", mkfs, err, out)
		}
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", fs, err, out)
	}
	t.Cleanup(func() {
		// Lazy: a client killed a moment ago may still hold its binary.
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	os.Chmod(mnt, 0o755)
	return mnt
}

// TestTighteningDestroysHeldConnection: a program holds a TCP connection
// that was allowed; the policy then denies it; the connection must be cut.
func TestTighteningDestroysHeldConnection(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)) })
	dir := t.TempDir()
	exe := clientCopy(t, dir, "holder")
	bystander := clientCopy(t, dir, "bystander")
	port := listenEcho(t)
	b.apply(t, &engine.Policy{})
	hold := attempt{Proto: "tcp", Op: "hold", Sock: 4, Addr: "127.0.0.1", Port: port}
	use := attempt{Op: "use-held"}
	steps := []attempt{hold, use, {Op: "ready"}, {Op: "wait"}, use}
	c := startClient(t, exe, cg, steps)
	other := startClient(t, bystander, cg, steps)
	c.waitReady(t)
	other.waitReady(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("holder", exe)}})
	out, otherOut := c.proceed(t), other.proceed(t)
	if out[0].Errno != "" || out[1].Errno != "" {
		t.Fatalf("connection was not established while allowed: %+v", out)
	}
	if out[4].Errno == "" {
		t.Errorf("held connection still flows after the rule tightened")
	} else {
		t.Logf("held connection cut: %s", out[4].Errno)
	}
	if otherOut[4].Errno != "" {
		t.Errorf("a bystander's connection was cut: %+v", otherOut[4])
	}
	_ = context.Background
}

// TestThreadsAreJudged: a connect from a thread other than the leader.
func TestThreadsAreJudged(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "threads")
	port := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{denyRule("d", exe)}})
	pid, out := runClient(t, exe, cg, []attempt{{Proto: "tcp", Op: "thread", Sock: 4, Addr: "127.0.0.1", Port: port}})
	if !out[0].denied() {
		t.Fatalf("connect from a thread: %+v, want EPERM", out[0])
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.Rule == "d" })
	if v.PID != uint32(pid) {
		t.Errorf("event pid %d, want the process id %d (not the thread id)", v.PID, pid)
	}
}
