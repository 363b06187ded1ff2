//go:build linux

package linux

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A copy of the test binary started with inServerEnv is a server for the
// inbound tests: it opens the sockets the variable describes (JSON list of
// inSock), prints their ports as a JSON line, accepts and reads, and answers
// "count" on stdin with how many connections or datagrams each received.
const inServerEnv = "EXEWALL_TEST_INSERVER"

type inSock struct {
	Proto     string `json:"proto"`  // tcp | udp
	Family    int    `json:"family"` // 4, 6, or 46: IPv6 with IPV6_V6ONLY off (mapped peers)
	Port      uint16 `json:"port,omitempty"`
	ReusePort bool   `json:"reuseport,omitempty"`
	// Pass: not served here; "pass I" hands it over on fd 3 (SCM_RIGHTS).
	Pass bool `json:"pass,omitempty"`
}

func init() {
	if spec := os.Getenv(inServerEnv); spec != "" {
		os.Exit(inServerMain(spec))
	}
}

func inServerMain(spec string) int {
	var socks []inSock
	if err := json.Unmarshal([]byte(spec), &socks); err != nil {
		fmt.Fprintln(os.Stderr, "inserver:", err)
		return 2
	}
	var mu sync.Mutex
	counts := make([]int, len(socks))
	ports := make([]uint16, len(socks))
	fds := make([]int, len(socks))
	for i, s := range socks {
		fd, port, err := openInSock(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "inserver:", err)
			return 2
		}
		ports[i], fds[i] = port, fd
		if !s.Pass {
			go serveInSock(fd, s.Proto, func() { mu.Lock(); counts[i]++; mu.Unlock() })
		}
	}
	json.NewEncoder(os.Stdout).Encode(ports)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		// "send I ADDR:PORT": a datagram from UDP socket I (IPv4 peers).
		var i int
		var to string
		if n, _ := fmt.Sscanf(in.Text(), "pass %d", &i); n == 1 && i < len(fds) {
			unix.Sendmsg(3, []byte("x"), unix.UnixRights(fds[i]), nil, 0)
		}
		if n, _ := fmt.Sscanf(in.Text(), "send %d %s", &i, &to); n == 2 && i < len(fds) {
			if ap, err := netip.ParseAddrPort(to); err == nil {
				unix.Sendto(fds[i], []byte("query"), 0, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
			}
		}
		mu.Lock()
		json.NewEncoder(os.Stdout).Encode(counts)
		mu.Unlock()
	}
	return 0
}

func openInSock(s inSock) (int, uint16, error) {
	family := unix.AF_INET
	if s.Family != 4 {
		family = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if s.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ, 0)
	if err != nil {
		return -1, 0, err
	}
	if s.Family == 46 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	} else if s.Family == 6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if s.ReusePort {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(s.Port)}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: int(s.Port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, 0, err
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 64); err != nil {
			return -1, 0, err
		}
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return -1, 0, err
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return fd, uint16(a.Port), nil
	case *unix.SockaddrInet6:
		return fd, uint16(a.Port), nil
	}
	return -1, 0, fmt.Errorf("unexpected address %T", got)
}

func serveInSock(fd int, proto string, got func()) {
	buf := make([]byte, 2048)
	for {
		if proto == "udp" {
			if _, _, err := unix.Recvfrom(fd, buf, 0); err == nil {
				got()
			}
			continue
		}
		nfd, _, err := unix.Accept(fd)
		if err != nil {
			continue
		}
		got()
		go func() {
			unix.Write(nfd, []byte("hello\n"))
			b := make([]byte, 64)
			for {
				if n, err := unix.Read(nfd, b); n <= 0 || err != nil {
					break
				}
			}
			unix.Close(nfd)
		}()
	}
}

// inServer is a running server copy.
type inServer struct {
	cmd   *exec.Cmd
	in    *os.File
	out   *bufio.Reader
	ports []uint16
}

// startInServer runs exe as a server inside cgroup cg (as cred, when not
// nil) and waits for its ports. It is killed when the test ends.
func startInServer(t *testing.T, exe, cg string, socks []inSock, cred *syscall.Credential, extra ...*os.File) *inServer {
	t.Helper()
	spec, _ := json.Marshal(socks)
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), inServerEnv+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()), Credential: cred}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = inR
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); inW.Close() })
	s := &inServer{cmd: cmd, in: inW, out: bufio.NewReader(outR)}
	line, err := s.out.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &s.ports) != nil {
		t.Fatalf("server %s did not start: %v %q", exe, err, line)
	}
	return s
}

func (s *inServer) pid() uint32 { return uint32(s.cmd.Process.Pid) }

// send makes the server send a datagram from its UDP socket i to dst.
func (s *inServer) send(t *testing.T, i int, dst netip.AddrPort) {
	t.Helper()
	fmt.Fprintf(s.in, "send %d %s\n", i, dst)
	if _, err := s.out.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
}

// takeListener asks the server to hand its socket i over on conn (the
// other end of its fd 3) and returns the received descriptor.
func (s *inServer) takeListener(t *testing.T, i int, conn int) int {
	t.Helper()
	fmt.Fprintf(s.in, "pass %d\n", i)
	if _, err := s.out.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(conn, buf, oob, 0)
	if err != nil {
		t.Fatalf("receive the listener: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive the listener: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("receive the listener: %v", err)
	}
	return fds[0]
}

// counts asks the server how many connections or datagrams each socket got.
func (s *inServer) counts(t *testing.T) []int {
	t.Helper()
	fmt.Fprintln(s.in, "count")
	line, err := s.out.ReadBytes('\n')
	var c []int
	if err != nil || json.Unmarshal(line, &c) != nil {
		t.Fatalf("server counts: %v %q", err, line)
	}
	return c
}

// inPeer runs f on a thread inside network namespace ns (the test's own
// when ns is -1): sockets f creates live there.
func inPeer(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	if ns == -1 {
		f()
		return
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		f()
		if err := netns.Set(orig); err != nil {
			done <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// dialIn connects from src (in ns) to dst over TCP and reads the server's
// greeting: nil when the server accepted, an error when the handshake got
// no answer within wait.
func dialIn(t *testing.T, ns netns.NsHandle, src netip.Addr, dst netip.AddrPort, wait time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inPeer(t, ns, func() {
		d := net.Dialer{Timeout: wait}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err = d.Dial("tcp", dst.String())
	})
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf), "hello") {
		c.Close()
		return nil, fmt.Errorf("no greeting: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// sendIn sends one datagram from src (in ns) to dst.
func sendIn(t *testing.T, ns netns.NsHandle, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	inPeer(t, ns, func() {
		var la *net.UDPAddr
		if src.IsValid() {
			la = &net.UDPAddr{IP: src.AsSlice()}
		}
		c, err := net.DialUDP("udp", la, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			t.Errorf("udp to %s: %v", dst, err)
			return
		}
		c.Write([]byte("exewall"))
		c.Close()
	})
}
