//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/test/kerneltest"
)

// namesNet is the world of the name-entry tests: a network namespace the
// test creates (kerneltest.NewNet) holding a trusted DNS server, a second
// DNS server no policy trusts (the attacker's own), an HTTP server on port
// 80 and a TCP echo on port 7000 of every host of the namespace, and a
// resolv.conf naming the trusted server, for programs run under
// namesNet.run (a mount namespace of their own with it bind-mounted over
// /etc/resolv.conf). Every answer is a host of the namespace.
type namesNet struct {
	net     *kerneltest.Net
	zone    *kerneltest.Zone // the trusted server's
	rogue   *kerneltest.Zone // the untrusted server's
	dns     netip.AddrPort   // trusted, UDP and TCP
	dns6    netip.AddrPort   // the trusted server's IPv6 address
	rogueNS netip.AddrPort   // untrusted, UDP and TCP
	conf    string           // resolv.conf naming dns
	nsswtch string           // nsswitch.conf: hosts from files, then dns
}

const namesEchoPort = 7000

func newNamesNet(t *testing.T) *namesNet {
	t.Helper()
	kerneltest.RequireTool(t, "unshare")
	n := &namesNet{net: kerneltest.NewNet(t), zone: kerneltest.NewZone(300), rogue: kerneltest.NewZone(300)}
	n.dns = netip.AddrPortFrom(n.net.Addr4(53), 53)
	n.dns6 = netip.AddrPortFrom(n.net.Addr6(53), 53)
	n.rogueNS = netip.AddrPortFrom(n.net.Addr4(54), 53)
	n.net.ServeDNS(t, n.dns, n.zone.Answer)
	n.net.ServeDNS(t, n.dns6, n.zone.Answer)
	n.net.ServeDNS(t, n.rogueNS, n.rogue.Answer)
	// A server on the trusted address's port 5353 answering the
	// attacker's way, and a DoT-looking listener on 853.
	n.net.ServeDNS(t, netip.AddrPortFrom(n.dns.Addr(), 5353), n.rogue.Answer)
	n.net.Listen(t, netip.MustParseAddrPort("[::]:853"), func(c net.Conn) {})
	n.net.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("[::]:%d", namesEchoPort)), func(c net.Conn) { io.Copy(c, c) })
	var l net.Listener
	n.net.Inside(t, func() (err error) { l, err = net.Listen("tcp", "[::]:80"); return err })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from", r.Host) }),
		ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	os.Chmod(dir, 0o755) // readable by the unprivileged attacker
	n.conf = filepath.Join(dir, "resolv.conf")
	n.nsswtch = filepath.Join(dir, "nsswitch.conf")
	files := map[string]string{n.conf: "nameserver " + n.dns.Addr().String() + "\noptions timeout:2 attempts:1\n",
		n.nsswtch: "hosts: files dns\n"}
	for p, data := range files {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// policy is the policy file the tests apply before adding rules with the
// CLI: allow by default, the namespace's first server the one trusted
// resolver.
func (n *namesNet) policy(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "names.yaml")
	text := fmt.Sprintf("default: allow\nresolvers: [%s, %s]\n", n.dns.Addr(), n.dns6.Addr())
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs prog with args in cgroup cg and a mount namespace of its own
// where /etc/resolv.conf and /etc/nsswitch.conf are the test's; with
// nobody set, as uid and gid 65534 without groups (setpriv). It returns
// the combined output and the error.
func (n *namesNet) run(t *testing.T, cg string, nobody bool, prog string, args ...string) (string, error) {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	script := `mount --bind "$0" /etc/resolv.conf && mount --bind "$1" /etc/nsswitch.conf && shift && exec "$@"`
	argv := []string{"-m", "--propagation", "private", "sh", "-c", script, n.conf, n.nsswtch}
	if nobody {
		argv = append(argv, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
	}
	argv = append(append(argv, prog), args...)
	cmd := exec.Command("unshare", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s: still running after 30s: %s", prog, strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// violationTo waits for a violation to addr:port since from, and returns it.
func (w *world) violationTo(since time.Time, addr netip.Addr, port int) map[string]any {
	w.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		for _, v := range w.violations("--since", since.Format(time.RFC3339Nano)) {
			if v["daddr"] == addr.String() && v["dport"] == float64(port) {
				return v
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("no violation to %s:%d; violations: %v", addr, port, w.violations("--since", since.Format(time.RFC3339Nano)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
