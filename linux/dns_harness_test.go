//go:build linux

package linux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine/dnsproxy"
)

// The DNS tests' pieces: a DNS server of the test's own in a network
// namespace the test creates, a minimal forwarder on the backend's seam (Origin, Learn, Forget;
// engine/dnsproxy's stand-in until it is merged), and a client mode of the
// test binary that looks names up and connects to the answers.

const dnsClientEnv = "EXEWALL_TEST_DNS_CLIENT"

func init() {
	switch os.Getenv(dnsClientEnv) {
	case "":
	case "hold":
		os.Exit(holdMain())
	default:
		os.Exit(dnsClientMain())
	}
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, m)
	return m, err
}

func writeTCPMsg(w io.Writer, m []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...))
	return err
}

// testForwarder is the real forwarder (engine/dnsproxy) on the backend's
// seam, as the daemon runs it (cmd/exewall/internal/platform/names_linux.go).
type testForwarder struct {
	p      *dnsproxy.Proxy
	cancel context.CancelFunc
	done   chan struct{}
}

func startTestForwarder(t *testing.T, b *Backend) *testForwarder {
	t.Helper()
	p, err := dnsproxy.New(dnsproxy.Config{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Listen6: netip.MustParseAddrPort("[::1]:0"),
		Origin: b, Learner: b, TTLFloor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	udp4, udp6, tcp4, tcp6 := p.Addrs()
	if err := b.SetForwarder(udp4, tcp4, udp6, tcp6, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &testForwarder{p: p, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(f.done); p.Serve(ctx) }()
	t.Cleanup(f.stop)
	return f
}

// stop ends the forwarder, as a crash would: the kernel still steers to
// its dead ports.
func (f *testForwarder) stop() {
	f.cancel()
	<-f.done
}

// dnsAsk is one lookup a client makes, then connects to what it got.
type dnsAsk struct {
	Server       string // host:port the program asks
	Net          string // udp4, udp6, udp (a dual-stack socket), tcp
	Unconnected  bool   // UDP: sendto/recvfrom on an unconnected socket
	Name         string
	AAAA         bool
	ConnectPort  uint16 // 0: no connect; else to every answered address
	ConnectTCP   bool   // else a UDP connect (judged, no packet sent)
	Direct       string // no lookup: connect to this address only
	ConnectPort0 uint16 // hold client: the TCP port to connect and hold
	Sleep        time.Duration
}

type dnsGot struct {
	Err     string   `json:",omitempty"`
	Addrs   []string `json:",omitempty"`
	From    string   `json:",omitempty"` // the reply's source (unconnected UDP)
	Peer    string   `json:",omitempty"` // getpeername of the DNS socket
	Connect []string `json:",omitempty"` // per address: ok, EPERM, or another error
}

func dnsClientMain() int {
	runtime.LockOSThread() // one thread asks and connects, as a program's resolver call does
	var asks []dnsAsk
	if err := json.NewDecoder(os.Stdin).Decode(&asks); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := make([]dnsGot, len(asks))
	for i, a := range asks {
		out[i] = a.do()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func errWord(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.EPERM):
		return "EPERM"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	}
	return err.Error()
}

func (a dnsAsk) do() (g dnsGot) {
	time.Sleep(a.Sleep)
	if a.Direct != "" {
		return a.connect(g, netip.MustParseAddr(a.Direct))
	}
	typ := dnsmessage.TypeA
	if a.AAAA {
		typ = dnsmessage.TypeAAAA
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(rand.IntN(65536)), RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(a.Name + "."), Type: typ, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	ans, err := a.exchange(q, &g)
	if err != nil {
		g.Err = errWord(err)
		return g
	}
	var p dnsmessage.Parser
	if _, err := p.Start(ans); err != nil {
		g.Err = err.Error()
		return g
	}
	p.SkipAllQuestions()
	rrs, _ := p.AllAnswers()
	for _, rr := range rrs {
		var addr netip.Addr
		switch r := rr.Body.(type) {
		case *dnsmessage.AResource:
			addr = netip.AddrFrom4(r.A)
		case *dnsmessage.AAAAResource:
			addr = netip.AddrFrom16(r.AAAA)
		default:
			continue
		}
		g = a.connect(g, addr)
	}
	return g
}

func (a dnsAsk) connect(g dnsGot, addr netip.Addr) dnsGot {
	g.Addrs = append(g.Addrs, addr.String())
	if a.ConnectPort == 0 {
		return g
	}
	dst := netip.AddrPortFrom(addr, a.ConnectPort).String()
	var c net.Conn
	var err error
	if a.ConnectTCP {
		c, err = net.DialTimeout("tcp", dst, time.Second)
	} else {
		c, err = net.Dial("udp", dst)
	}
	if err == nil {
		c.Close()
	}
	g.Connect = append(g.Connect, errWord(err))
	return g
}

func (a dnsAsk) exchange(q []byte, g *dnsGot) ([]byte, error) {
	deadline := time.Now().Add(2 * time.Second)
	if a.Net == "tcp" {
		c, err := net.DialTimeout("tcp", a.Server, 2*time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		g.Peer = peerName(c.(*net.TCPConn))
		c.SetDeadline(deadline)
		if err := writeTCPMsg(c, q); err != nil {
			return nil, err
		}
		return readTCPMsg(c)
	}
	buf := make([]byte, 1500)
	if a.Net == "mapped" { // a dual-stack socket connected to ::ffff:a.b.c.d
		return exchangeMapped(netip.MustParseAddrPort(a.Server), q, g)
	}
	if a.Unconnected {
		pc, err := net.ListenUDP(a.Net, nil)
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		pc.SetDeadline(deadline)
		if _, err := pc.WriteToUDPAddrPort(q, netip.MustParseAddrPort(a.Server)); err != nil {
			return nil, err
		}
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, err
		}
		g.From = from.String()
		return buf[:n], nil
	}
	c, err := net.Dial(a.Net, a.Server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	g.Peer = peerName(c.(*net.UDPConn))
	c.SetDeadline(deadline)
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// peerName is getpeername(2) itself: Go's RemoteAddr is what was dialed.
func peerName(c syscall.Conn) string {
	rc, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var out string
	rc.Control(func(fd uintptr) {
		sa, err := unix.Getpeername(int(fd))
		switch s := sa.(type) {
		case *unix.SockaddrInet4:
			out = netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(s.Port)).String()
		case *unix.SockaddrInet6:
			out = netip.AddrPortFrom(netip.AddrFrom16(s.Addr), uint16(s.Port)).String()
		default:
			out = fmt.Sprint(err)
		}
	})
	return out
}

// runDNSClient runs exe (a copy of the test binary) in cg with asks.
func runDNSClient(t *testing.T, exe, cg string, asks []dnsAsk) []dnsGot {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), dnsClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	in, _ := json.Marshal(asks)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dns client: %v: %s", err, stderr.String())
	}
	var out []dnsGot
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("dns client output %q: %v", stdout.String(), err)
	}
	return out
}

// holdClient looks a name up, connects over TCP to the answer and holds
// the connection; each "probe" line on stdin sends a byte and waits for the
// echo, answered with a line: ok, or what failed.
type holdClient struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startHoldClient(t *testing.T, exe, cg string, ask dnsAsk) *holdClient {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	cmd := exec.Command(exe)
	in, _ := json.Marshal(ask)
	cmd.Env = append(os.Environ(), dnsClientEnv+"=hold", dnsHoldEnv+"="+string(in))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holdClient{cmd: cmd, in: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if line := h.line(t); line != "held ok" {
		t.Fatalf("hold client: %q", line)
	}
	return h
}

const dnsHoldEnv = "EXEWALL_TEST_DNS_HOLD"

func (h *holdClient) line(t *testing.T) string {
	t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("hold client: %v", err)
	}
	return strings.TrimSpace(s)
}

func (h *holdClient) probe(t *testing.T) string {
	t.Helper()
	fmt.Fprintln(h.in, "probe")
	return h.line(t)
}

func holdMain() int {
	var a dnsAsk
	if err := json.Unmarshal([]byte(os.Getenv(dnsHoldEnv)), &a); err != nil {
		fmt.Println("held", err)
		return 2
	}
	a.ConnectPort = 0
	g := a.do()
	if g.Err != "" || len(g.Addrs) == 0 {
		fmt.Println("held lookup", g.Err)
		return 1
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(g.Addrs[0], fmt.Sprint(a.ConnectPort0)), 2*time.Second)
	fmt.Println("held", errWord(err))
	if err != nil {
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Write([]byte{'x'})
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
		}
		fmt.Println(errWord(err))
	}
	return 0
}

func exchangeMapped(server netip.AddrPort, q []byte, g *dnsGot) ([]byte, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	mapped := netip.AddrFrom16(server.Addr().As16())
	if err := unix.Connect(fd, &unix.SockaddrInet6{Port: int(server.Port()), Addr: mapped.As16()}); err != nil {
		return nil, err
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		if s6, ok := sa.(*unix.SockaddrInet6); ok {
			g.Peer = netip.AddrPortFrom(netip.AddrFrom16(s6.Addr), uint16(s6.Port)).String()
		}
	}
	if _, err := unix.Write(fd, q); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, err
	}
	if s6, ok := from.(*unix.SockaddrInet6); ok {
		g.From = netip.AddrPortFrom(netip.AddrFrom16(s6.Addr), uint16(s6.Port)).String()
	}
	return buf[:n], nil
}
