//go:build linux

package linux

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// olderLayout makes the datapath's specs look like an earlier release's:
// the socket owner carries 8 more bytes (a field the current layout
// dropped) and the counters had a lower limit, so the current daemon finds
// their pins incompatible and must migrate them.
func olderLayout(spec *ebpf.CollectionSpec) {
	if ms := spec.Maps["sock_owners"]; ms != nil {
		ms.ValueSize += 8
		if s, ok := btf.UnderlyingType(ms.Value).(*btf.Struct); ok {
			c := *s
			c.Size += 8
			ms.Value = &c
		}
	}
	for _, name := range []string{"counters", "counter_names"} {
		if ms := spec.Maps[name]; ms != nil && ms.Type != ebpf.ArrayOfMaps { // counter_names: sized to the policy
			ms.MaxEntries /= 2
		}
	}
}

// TestUpgradeMigratesEntries upgrades from pins of an older layout: what
// the old datapath accumulated must survive, not start empty. Counters and
// their names (per-CPU array, hash) keep counting, and the owner recorded
// on a socket held since before the upgrade (socket storage) still lets a
// tightened rule cut it.
func TestUpgradeMigratesEntries(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	dir := t.TempDir()
	denied, holder := clientCopy(t, dir, "denied"), clientCopy(t, dir, "holder")
	port := listenLoopback(t)
	echo := listenEcho(t)
	allow := &engine.Policy{Rules: []engine.Rule{denyRule("d", denied),
		{Name: "h", Selector: engine.Selector{Exe: holder}, Action: engine.ActionAllow}}}

	specHook = olderLayout
	old, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	specHook = nil
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() }) // when the test fails before it does
	if err := old.Apply(context.Background(), allow); err != nil {
		t.Fatal(err)
	}
	if _, out := runClient(t, denied, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("old datapath: %+v, want EPERM", out[0])
	}
	c := startClient(t, holder, cg, []attempt{{Proto: "tcp", Op: "hold", Sock: 4, Addr: "127.0.0.1", Port: echo},
		{Op: "ready"}, {Op: "wait"}, {Op: "use-held"}})
	c.waitReady(t)
	old.Close() // a stopping daemon: enforcement and pins stay

	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if !b.repin {
		t.Fatal("the older layout was not detected")
	}
	tight := allow.Clone()
	tight.Rules[1].Action = engine.ActionDeny
	if err := b.Apply(context.Background(), tight); err != nil {
		t.Fatal(err)
	}
	if out := c.proceed(t); out[3].Errno == "" {
		t.Errorf("a connection held since before the upgrade survived the tightened rule: %+v", out[3])
	}
	if _, out := runClient(t, denied, cg, loopbackTCP(port)); !out[0].denied() {
		t.Fatalf("after the upgrade: %+v, want EPERM", out[0])
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.RuleCounter["d"].Denied; got != 2 {
		t.Errorf("rule d's denied counter after the upgrade is %d, want 2 (1 before, 1 after)", got)
	}
	for _, name := range []string{"sock_owners", "counter_names", "counters"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
		if err != nil {
			t.Fatalf("%s not pinned after the upgrade: %v", name, err)
		}
		cur := b.mapsByName()[name]
		if m.ValueSize() != cur.ValueSize() || m.MaxEntries() != cur.MaxEntries() {
			t.Errorf("pinned %s has the older layout (value size %d, %d entries), want the current one", name, m.ValueSize(), m.MaxEntries())
		}
		m.Close()
	}
}

// socketsOf returns copies (pidfd_getfd) of the sockets process pid holds,
// closed at the end of the test.
func socketsOf(t *testing.T, pid int) []int {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, _ := strconv.Atoi(e.Name())
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		fds = append(fds, fd)
	}
	if len(fds) == 0 {
		t.Fatalf("process %d holds no socket", pid)
	}
	return fds
}

// TestMigrateTaskStorage copies task storage (which userspace cannot list)
// from one map to another with migrate.c's task iterator: what a task had
// in the old map it has in the new one, cut or zero-padded to the new size.
func TestMigrateTaskStorage(t *testing.T) {
	requireKernel(t)
	spec, err := loadMigrate()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, size uint32) *ebpf.Map {
		ms := spec.Maps[name].Copy()
		ms.ValueSize, ms.Value = size, &btf.Struct{Name: "blob", Size: size}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			kerneltest.Skipf(t, "task storage: %v", err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	old, fresh := mk("old_task", 16), mk("new_task", 24)
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	want := []byte("exewall-task-001")
	if err := old.Update(uint32(pidfd), want, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if _, err := copyMap(old, fresh, false); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := fresh.Lookup(uint32(pidfd), &got); err != nil {
		t.Fatalf("no storage for this task in the new map: %v", err)
	}
	if !bytes.Equal(got, append(want, make([]byte, 8)...)) {
		t.Fatalf("migrated value %q, want %q and 8 zero bytes", got, want)
	}
}
