//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testNet is a network namespace the test creates, with addresses from
// 198.51.100.0/24 (TEST-NET-2) on its loopback and servers the test
// runs inside it: the only hosts the real programs under test may reach.
type testNet struct {
	name string
	path string // /run/netns/NAME
}

const (
	netWeb   = "198.51.100.10" // HTTP on port 80
	netWeb2  = "198.51.100.11" // the second address of multi.exewall.test (HTTP too)
	netEcho  = "198.51.100.20" // TCP port 7000: accepts and closes
	netNew   = "198.51.100.30" // HTTP on port 80, never used while learning
	netDNS   = "198.51.100.53" // DNS on UDP port 53
	echoPort = 7000
)

// newTestNet creates the namespace, its addresses, and the resolv.conf
// `ip netns exec` puts in place for programs run in it; all removed at
// cleanup.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	n := &testNet{name: randName("exewall-userfix-")}
	n.path = filepath.Join("/run/netns", n.name)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", n.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	run("ip", "-n", n.name, "link", "set", "lo", "up")
	for _, a := range []string{netWeb, netWeb2, netEcho, netNew, netDNS} {
		run("ip", "-n", n.name, "addr", "add", a+"/32", "dev", "lo")
	}
	etc := filepath.Join("/etc/netns", n.name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(etc)
		os.Remove("/etc/netns") // only if nobody else uses it
	})
	files := map[string]string{
		"resolv.conf":   "nameserver " + netDNS + "\noptions timeout:2 attempts:2\n",
		"nsswitch.conf": "hosts: files dns\n",
		"hosts":         "127.0.0.1 localhost\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// inside runs f on an OS thread that has joined the namespace: sockets f
// creates belong to it for good. The thread is discarded afterwards.
func (n *testNet) inside(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in netns %s: %v", n.name, err)
	}
}

// serve starts the servers: HTTP on netWeb, netWeb2 and netNew port 80, a
// TCP acceptor on netEcho, and a DNS server on netDNS answering A queries
// for web.exewall.test (netWeb), new.exewall.test (netNew) and
// multi.exewall.test (netWeb and netWeb2).
func (n *testNet) serve(t *testing.T) {
	t.Helper()
	var closers []func() error
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	n.inside(t, func() error {
		for _, a := range []string{netWeb, netWeb2, netNew} {
			l, err := net.Listen("tcp4", a+":80")
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })}
			go srv.Serve(l)
			closers = append(closers, srv.Close)
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", netEcho, echoPort))
		if err != nil {
			return err
		}
		go acceptClose(l)
		closers = append(closers, l.Close)
		pc, err := net.ListenPacket("udp4", netDNS+":53")
		if err != nil {
			return err
		}
		go serveDNS(pc)
		closers = append(closers, pc.Close)
		return nil
	})
}

func acceptClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

var dnsZone = map[string][]string{
	"web.exewall.test":   {netWeb},
	"new.exewall.test":   {netNew},
	"multi.exewall.test": {netWeb, netWeb2},
}

// serveDNS answers one-question queries from dnsZone: A records for the
// names it has, no records for other types, NXDOMAIN for other names.
func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < 12 {
			continue
		}
		if resp := dnsAnswer(buf[:n]); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func dnsAnswer(q []byte) []byte {
	if binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, strings.ToLower(string(q[i+1:i+1+l])))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	qend := i + 5
	addrs, known := dnsZone[strings.Join(labels, ".")]
	resp := append([]byte(nil), q[:qend]...)
	flags := uint16(0x8180) // response, recursion desired and available
	if !known {
		flags |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[2:4], flags)
	binary.BigEndian.PutUint16(resp[8:10], 0)
	binary.BigEndian.PutUint16(resp[10:12], 0)
	var an uint16
	if qtype == 1 {
		for _, a := range addrs {
			ip := net.ParseIP(a).To4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, ip...)
			an++
		}
	}
	binary.BigEndian.PutUint16(resp[6:8], an)
	return resp
}
