//go:build linux

package linux

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/exewall/exewall/engine"
)

// listenerScript listens on TCP 0.0.0.0 and [::] (ports the kernel picks)
// and binds UDP 0.0.0.0:ARGV[0], prints the TCP ports, then waits for
// stdin to close. Nothing is sent anywhere.
const listenerScript = `use Socket qw(:all);
socket(my $t4, PF_INET, SOCK_STREAM, 0) or die "t4: $!";
bind($t4, pack_sockaddr_in(0, INADDR_ANY)) or die "bind t4: $!"; listen($t4, 5) or die;
socket(my $t6, PF_INET6, SOCK_STREAM, 0) or die "t6: $!";
setsockopt($t6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
bind($t6, pack_sockaddr_in6(0, IN6ADDR_ANY)) or die "bind t6: $!"; listen($t6, 5) or die;
socket(my $u, PF_INET, SOCK_DGRAM, 0) or die "u: $!";
bind($u, pack_sockaddr_in($ARGV[0], INADDR_ANY)) or die "bind u: $!";
my ($p4) = unpack_sockaddr_in(getsockname($t4)); my ($p6) = unpack_sockaddr_in6(getsockname($t6));
$| = 1; print "$p4 $p6\n"; <STDIN>;
`

// TestListenersAndTheCheck runs a real server, as uid 65534 in the scratch
// cgroup, with TCP listeners on 0.0.0.0 and [::] and a bound UDP socket
// (all non-loopback addresses; no packet is sent). The backend lists them
// with the program's identity, leaves out the test's own listener (not
// under the attach cgroup), and the manager refuses to deny the program,
// naming it and its ports, until --force.
func TestListenersAndTheCheck(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	tb := newTestBackend(t, cg)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // uid 65534 runs the copy
	exe := filepath.Join(dir, "perl-server")
	copyFile(t, "/usr/bin/perl", exe)

	// The test's own listener: on a non-loopback address, outside the cgroup.
	own, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	udpPort := freeUDPPort(t)

	cmd, ports := startListener(t, exe, cg, udpPort)
	want := map[string]bool{"tcp 0.0.0.0:" + ports[0]: true, "tcp [::]:" + ports[1]: true, "udp 0.0.0.0:" + strconv.Itoa(udpPort): true}

	ls, err := tb.Listeners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := tb.Identify(exe)
	if err != nil || !ok {
		t.Fatal(err)
	}
	for _, l := range ls {
		key := l.Proto.String() + " " + l.Local.String()
		if l.Local.Port() == uint16(own.Addr().(*net.TCPAddr).Port) {
			t.Errorf("listed a listener outside the attach cgroup: %+v", l)
		}
		if !want[key] {
			continue
		}
		delete(want, key)
		if l.PID != uint32(cmd.Process.Pid) || l.Exe != exe || l.Owner.Exe != id || !l.Owner.HasExe ||
			l.Owner.UID != 65534 || l.Owner.Cgroup != "/"+strings.TrimPrefix(strings.TrimPrefix(cg, tb.cgroupRoot), "/") {
			t.Errorf("%s attributed to %+v (owner %+v), want pid %d %s %v uid 65534 in %s", key, l, l.Owner, cmd.Process.Pid, exe, id, cg)
		}
	}
	if len(want) > 0 {
		t.Fatalf("not listed: %v (listed %+v)", want, ls)
	}

	m := engine.NewManager(engine.ManagerConfig{Backend: tb.Backend})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	deny := engine.Rule{Name: "perl-server", Selector: engine.Selector{Exe: exe}, Action: engine.ActionDeny}
	_, err = m.AddRule(context.Background(), deny)
	var ce *engine.CutError
	if !errors.As(err, &ce) || len(ce.Cuts) != 3 || !strings.Contains(err.Error(), exe) ||
		!strings.Contains(err.Error(), "tcp port "+ports[0]) || !strings.Contains(err.Error(), "udp port "+strconv.Itoa(udpPort)) {
		t.Fatalf("deny of a listening server: %v, want a refusal naming %s and its three sockets", err, exe)
	}
	if len(m.Policy().Rules) != 0 {
		t.Fatal("the refused rule is in force")
	}
	if _, err := m.AddRule(context.Background(), deny, engine.Force()); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if st, _ := m.Status(context.Background()); st.ListenersCut != 3 {
		t.Fatalf("status after a forced cut: %+v", st)
	}

	// A server started now that the hooks are attached: its TCP listeners
	// carry the creator record the datapath keeps, and are attributed by it.
	exe2 := filepath.Join(dir, "perl-server2")
	copyFile(t, "/usr/bin/perl", exe2)
	id2, _, err := tb.Identify(exe2)
	if err != nil {
		t.Fatal(err)
	}
	cmd2, ports2 := startListener(t, exe2, cg, freeUDPPort(t))
	records := tb.listenerRecords()
	ls, err = tb.Listeners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, l := range ls {
		if l.PID != uint32(cmd2.Process.Pid) || l.Proto != engine.ProtoTCP {
			continue
		}
		found++
		if l.Owner.Exe != id2 || l.Owner.UID != 65534 || !slices.Contains(ports2, strconv.Itoa(int(l.Local.Port()))) {
			t.Errorf("%s attributed to %+v, want %v uid 65534", l.Local, l.Owner, id2)
		}
	}
	recorded := 0
	for _, o := range records {
		if o.Uid == 65534 && (engine.FileID{Dev: o.Exe.Dev, Gen: o.Exe.Igen, Ino: o.Exe.Ino}) == id2 {
			recorded++
		}
	}
	if found != 2 || recorded != 2 {
		t.Fatalf("listeners of the second server: %d, with the kernel's creator record %d (%+v)", found, recorded, ls)
	}
	// Listeners reads the records in its sock_diag dump, not through the
	// sockets iterator: the same records.
	socks, dumped, err := tb.diagListenersOwned()
	if err != nil || dumped == nil {
		t.Fatalf("sock_diag with the creator records: %v (records %v)", err, dumped)
	}
	same := 0
	for _, s := range socks {
		want, ok := records[s.cookie]
		if got, has := dumped[s.cookie]; ok != has || got != want {
			t.Errorf("listener %s: dumped record %+v (%v), the iterator's %+v (%v)", s.local, got, has, want, ok)
		} else if ok && got.Uid == 65534 {
			same++
		}
	}
	if same != 2 {
		t.Errorf("the second server's listeners with the same record in both: %d, want 2", same)
	}
}

// startListener runs listenerScript with exe as uid 65534 in cg and returns
// it with its TCP ports (v4, v6); it is stopped when the test ends.
func startListener(t *testing.T, exe, cg string, udpPort int) (*exec.Cmd, []string) {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(exe, "-e", listenerScript, strconv.Itoa(udpPort))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()),
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("server: %v: %s", err, stderr.String())
	}
	return cmd, strings.Fields(line)
}

// freeUDPPort finds a UDP port below the ephemeral range that is free now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	lo, _ := ephemeralRange()
	for p := int(lo) - 1000; p > 1024; p -= 7 {
		c, err := net.ListenPacket("udp4", "0.0.0.0:"+strconv.Itoa(p))
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no free UDP port")
	return 0
}
