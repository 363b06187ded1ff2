//go:build linux

package linux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The unprivileged attacker of issue 13: a copy of the test binary started
// with EXEWALL_H3_ATTACK=<scenario>, in the scratch cgroup, usually as uid
// 65534 and inside a test network namespace. It prints one JSON object of
// errno names per step ("" = the kernel let it through).
const attackEnv = "EXEWALL_H3_ATTACK"

func init() {
	sc := os.Getenv(attackEnv)
	if sc == "" {
		return
	}
	res := map[string]string{}
	attack(sc, res)
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func errName(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// srh builds an IPv6 segment routing header (type 4) whose first hop is seg:
// the kernel puts the connect/sendto destination in segments[0] and sends
// the packet to segments[segments_left] = seg.
func srh(seg netip.Addr) []byte {
	b := make([]byte, 8+2*16)
	b[0] = 0 // next header: filled by the kernel
	b[1] = 4 // hdr ext len: 2 segments * 2
	b[2] = 4 // routing type 4 (SRH)
	b[3] = 1 // segments left
	b[4] = 1 // last entry
	a := seg.As16()
	copy(b[8+16:], a[:]) // segments[1]
	return b
}

// rt2 is a type 2 routing header (Mobile IPv6) through seg.
func rt2(seg netip.Addr) []byte {
	b := make([]byte, 24)
	b[1], b[2], b[3] = 2, 2, 1
	a := seg.As16()
	copy(b[8:], a[:])
	return b
}

func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// lsrr is an IPv4 loose source route option through seg.
func lsrr(seg netip.Addr) []byte {
	a := seg.As4()
	return []byte{0x83, 7, 4, a[0], a[1], a[2], a[3], 0}
}

// execNext execs H3_NEXT, which runs scenario sc with this one's environment
// (and the files it holds open: what it hands over).
func execNext(sc string) error {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, attackEnv+"=") {
			env = append(env, e)
		}
	}
	return unix.Exec(os.Getenv("H3_NEXT"), []string{"next"}, append(env, attackEnv+"="+sc))
}

// handOver puts fd at 3 and execs H3_NEXT as scenario sc, which finds it
// there.
func handOver(fd int, sc string, res map[string]string) {
	if err := unix.Dup2(fd, 3); err != nil {
		res["dup"] = errName(err)
		return
	}
	res["exec"] = errName(execNext(sc))
}

func attack(sc string, res map[string]string) {
	if sc == "families" {
		attackFamilies(res)
		return
	}
	seg := netip.MustParseAddr(os.Getenv("H3_SEG"))
	dst := netip.MustParseAddr(os.Getenv("H3_DST"))
	port, _ := strconv.Atoi(os.Getenv("H3_PORT"))
	sa6 := &unix.SockaddrInet6{Port: port, Addr: dst.As16()}
	sa4 := &unix.SockaddrInet4{Port: port}
	if dst.Is4() {
		sa4.Addr = dst.As4()
	}
	in := bufio.NewReader(os.Stdin)
	hdr := srh(seg)
	if os.Getenv("H3_MIP6") == "true" {
		hdr = rt2(seg) // what ancillary data and RFC 2292 options accept
	}
	switch sc {
	case "uring":
		attackURing(dst, port, res)
	case "srh-tcp", "srh-udp", "srh-2292":
		typ := unix.SOCK_STREAM
		if sc != "srh-tcp" {
			typ = unix.SOCK_DGRAM
		}
		fd, _ := unix.Socket(unix.AF_INET6, typ|unix.SOCK_NONBLOCK, 0)
		if sc == "srh-2292" {
			res["setsockopt"] = errName(unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_2292PKTOPTIONS,
				string(cmsg(unix.IPPROTO_IPV6, unix.IPV6_RTHDR, hdr))))
		} else {
			res["setsockopt"] = errName(unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh(seg))))
		}
		if typ == unix.SOCK_STREAM {
			res["connect"] = errName(ignoreInProgress(unix.Connect(fd, sa6)))
		} else {
			res["send"] = errName(unix.Sendto(fd, []byte("x"), 0, sa6))
		}
		time.Sleep(300 * time.Millisecond)
	case "srh-handover":
		// A restricted program creates a UDP socket and hands it across
		// exec to H3_NEXT (unrestricted), running "srh-handed".
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
		if err != nil {
			res["socket"] = errName(err)
			return
		}
		handOver(fd, "srh-handed", res)
	case "srh-handed":
		// fd 3 is a UDP socket a restricted program created: this
		// unrestricted one may set a routing header and send.
		res["setsockopt"] = errName(unix.SetsockoptString(3, unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh(seg))))
		res["send"] = errName(unix.Sendto(3, []byte("x"), 0, sa6))
		time.Sleep(300 * time.Millisecond)
	case "srh-cmsg":
		fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
		oob := cmsg(unix.IPPROTO_IPV6, unix.IPV6_RTHDR, hdr)
		res["send"] = errName(unix.Sendmsg(fd, []byte("x"), oob, sa6, 0))
		// Connected: no sendmsg hook runs at all for the later sends.
		c, _ := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
		res["connect"] = errName(unix.Connect(c, sa6))
		res["send-connected"] = errName(unix.Sendmsg(c, []byte("x"), oob, nil, 0))
	case "srh-listen":
		// A listener with a routing header: every accepted socket inherits it.
		fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
		res["setsockopt"] = errName(unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh(seg))))
		res["bind"] = errName(unix.Bind(fd, sa6))
		res["listen"] = errName(unix.Listen(fd, 8))
		fmt.Println("ready")
		in.ReadString('\n') // the peer has tried to connect: its SYN-ACK carried the header
	case "lsrr-udp":
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		res["setsockopt"] = errName(unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string(lsrr(seg))))
		res["send"] = errName(unix.Sendto(fd, []byte("x"), 0, sa4))
		// The same option as ancillary data.
		c, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		res["send-cmsg"] = errName(unix.Sendmsg(c, []byte("x"), cmsg(unix.IPPROTO_IP, unix.IP_RETOPTS, lsrr(seg)), sa4, 0))
	case "flood":
		// A new destination each time: the kernel's per-destination
		// aggregation cannot fold these.
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		end := time.Now().Add(2 * time.Second)
		n := 0
		for ; time.Now().Before(end); n++ {
			i := n + 1
			unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 1000 + i%50000, Addr: [4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}})
		}
		res["sent"] = strconv.Itoa(n)
	case "close-wait":
		// Connect, let the peer close its side (CLOSE_WAIT), keep sending.
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		res["connect"] = errName(unix.Connect(fd, sa4))
		buf := make([]byte, 16)
		for {
			if n, err := unix.Read(fd, buf); n <= 0 || err != nil {
				break
			}
		}
		fmt.Println("ready")
		in.ReadString('\n')
		res["write"] = errName(sendAll(fd))
	case "accepted":
		// Listen, accept the peer's connection, keep sending on it.
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if os.Getenv("H3_UNBOUND") == "" {
			res["bind"] = errName(unix.Bind(fd, sa4))
		}
		res["listen"] = errName(unix.Listen(fd, 8))
		if os.Getenv("H3_UNBOUND") != "" {
			// listen() picked the port: tell the peer, which connects
			// and tightens while the listener lives.
			sa, _ := unix.Getsockname(fd)
			fmt.Printf("ready %d\n", sa.(*unix.SockaddrInet4).Port)
		}
		nfd, _, err := unix.Accept(fd)
		res["accept"] = errName(err)
		if os.Getenv("H3_UNBOUND") == "" {
			unix.Close(fd) // the listener is gone: only the accepted socket remains
			fmt.Println("ready")
		}
		in.ReadString('\n')
		res["write"] = errName(sendAll(nfd))
	case "many":
		// Hold H3_COUNT connected UDP sockets, then try each.
		count, _ := strconv.Atoi(os.Getenv("H3_COUNT"))
		fds := make([]int, 0, count)
		for len(fds) < count {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				res["socket"] = errName(err)
				break
			}
			// One source address per socket: ephemeral ports run out
			// long before 65,536 sockets to one destination.
			i := len(fds) + os.Getpid()%200*25000
			unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}})
			if err := unix.Connect(fd, sa4); err != nil {
				res["connect"] = errName(err)
				break
			}
			fds = append(fds, fd)
		}
		fmt.Println("ready")
		in.ReadString('\n')
		alive := 0
		for _, fd := range fds {
			var so int
			so, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if so == 0 {
				if _, err := unix.Write(fd, []byte("x")); err == nil {
					alive++
				}
			}
		}
		res["held"] = strconv.Itoa(len(fds))
		res["alive"] = strconv.Itoa(alive)
	case "ping-held":
		// A ping socket created while unrestricted, used again after the
		// rule tightened.
		fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
		if dst.Is6() {
			fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM, proto)
		res["socket"] = errName(err)
		res["send-before"] = errName(unix.Sendto(fd, icmpEcho(dst.Is6()), 0, sockaddr(dst)))
		res["reply-before"] = errName(recvTimeout(fd))
		fmt.Println("ready")
		in.ReadString('\n')
		res["send"] = errName(unix.Sendto(fd, icmpEcho(dst.Is6()), 0, sockaddr(dst)))
		res["reply"] = errName(recvTimeout(fd))
	case "ping-own", "ping-launch":
		// An unrestricted program creates a ping socket and hands it over
		// across exec to H3_NEXT (restricted), running "ping-inherited".
		fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
		if dst.Is6() {
			fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM, proto)
		if err != nil {
			res["socket"] = errName(err)
			return
		}
		if sc == "ping-own" {
			res["send"] = errName(unix.Sendto(fd, icmpEcho(dst.Is6()), 0, sockaddr(dst)))
			res["reply"] = errName(recvTimeout(fd))
			return
		}
		handOver(fd, "ping-inherited", res)
	case "memo-exec":
		// Allowed sends fill the per-CPU memo of the last verdict; the
		// same thread then execs H3_NEXT (denied), which sends again.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			res["socket"] = errName(err)
			return
		}
		for i := 0; i < 3; i++ {
			if err := unix.Sendto(fd, []byte("x"), 0, sa4); err != nil {
				res["send-before"] = errName(err)
			}
		}
		runtime.LockOSThread() // exec from the thread that sent
		res["exec"] = errName(execNext("memo-next"))
	case "memo-next":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			res["socket"] = errName(err)
			return
		}
		res["send"] = errName(unix.Sendto(fd, []byte("x"), 0, sa4))
		res["connect"] = errName(unix.Connect(fd, sa4))
	case "ping-inherited":
		// fd 3 is a ping socket an unrestricted program created and handed
		// over across exec.
		res["send"] = errName(unix.Sendto(3, icmpEcho(dst.Is6()), 0, sockaddr(dst)))
		res["reply"] = errName(recvTimeout(3))
	}
}

// sendAll writes for a moment: a cut connection fails within it.
func sendAll(fd int) error {
	for i := 0; i < 20; i++ {
		if _, err := unix.Write(fd, []byte("x")); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func ignoreInProgress(err error) error {
	if err == unix.EINPROGRESS {
		return nil
	}
	return err
}

func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

func icmpEcho(v6 bool) []byte {
	b := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'h', '3'}
	if v6 {
		b[0] = 128
	}
	return b
}

func recvTimeout(fd int) error {
	tv := unix.NsecToTimeval(int64(time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 256)
	_, _, err := unix.Recvfrom(fd, buf, 0)
	return err
}

// testNet is a pair of network namespaces joined by a veth pair: the
// attacker runs in "a", "b" is the host a source route would reach.
type testNet struct {
	a, b     string // namespace names under /run/netns
	ifa      string // a's veth
	a4, b4   netip.Addr
	a6, b6   netip.Addr
	allowed4 netip.Addr // on-link, unanswered: the destination a rule allows
	allowed6 netip.Addr
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	n := &testNet{a: randName("exwh3a-"), b: randName("exwh3b-"), ifa: randName("h3a"),
		a4: netip.MustParseAddr("10.213.0.1"), b4: netip.MustParseAddr("10.213.0.2"), allowed4: netip.MustParseAddr("10.213.0.99"),
		a6: netip.MustParseAddr("fd00:e13::1"), b6: netip.MustParseAddr("fd00:e13::2"), allowed6: netip.MustParseAddr("fd00:e13::99")}
	ipCmd(t, "netns", "add", n.a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.a).Run() })
	ipCmd(t, "netns", "add", n.b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.b).Run() })
	ipCmd(t, "-n", n.a, "link", "add", n.ifa, "type", "veth", "peer", "name", "h3b", "netns", n.b)
	for _, s := range []struct{ ns, dev, a4, a6, mac string }{{n.a, n.ifa, "10.213.0.1/24", "fd00:e13::1/64", "02:00:00:00:13:01"},
		{n.b, "h3b", "10.213.0.2/24", "fd00:e13::2/64", "02:00:00:00:13:02"}} {
		ipCmd(t, "-n", s.ns, "link", "set", s.dev, "address", s.mac)
		ipCmd(t, "-n", s.ns, "addr", "add", s.a4, "dev", s.dev)
		ipCmd(t, "-n", s.ns, "addr", "add", s.a6, "dev", s.dev, "nodad")
		ipCmd(t, "-n", s.ns, "link", "set", s.dev, "up")
		ipCmd(t, "-n", s.ns, "link", "set", "lo", "up")
		ipCmd(t, "netns", "exec", s.ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	}
	// Answer for the allowed addresses so packets to them leave at once.
	ipCmd(t, "-n", n.a, "neigh", "add", n.allowed4.String(), "lladdr", "02:00:00:00:00:99", "dev", n.ifa)
	ipCmd(t, "-n", n.a, "neigh", "add", n.allowed6.String(), "lladdr", "02:00:00:00:00:99", "dev", n.ifa)
	for _, a := range []netip.Addr{n.b4, n.b6} {
		ipCmd(t, "-n", n.a, "neigh", "add", a.String(), "lladdr", "02:00:00:00:13:02", "dev", n.ifa)
	}
	for _, a := range []netip.Addr{n.a4, n.a6} {
		ipCmd(t, "-n", n.b, "neigh", "add", a.String(), "lladdr", "02:00:00:00:13:01", "dev", "h3b")
	}
	return n
}

// inNetns runs f on a thread moved into namespace ns.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		f()
	}()
	<-done
}

// capture reads every frame leaving or entering interface dev of namespace
// ns (an AF_PACKET socket: what is on the wire) until stop is called.
func capture(t *testing.T, ns, dev string) (stop func() [][]byte) {
	t.Helper()
	var fd int
	inNetns(t, ns, func() {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatalf("packet socket: %v", err)
		}
		ifi, err := netInterfaceIndex(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi}); err != nil {
			t.Fatal(err)
		}
	})
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var mu sync.Mutex
	var frames [][]byte
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-quit:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			mu.Lock()
			frames = append(frames, bytes.Clone(buf[:n]))
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() [][]byte {
		once.Do(func() {
			time.Sleep(200 * time.Millisecond)
			close(quit)
			<-done
			unix.Close(fd)
		})
		mu.Lock()
		defer mu.Unlock()
		return frames
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func netInterfaceIndex(dev string) (int, error) {
	data, err := os.ReadFile("/sys/class/net/" + dev + "/ifindex")
	if err != nil {
		// /sys shows the namespace it was mounted in; ask the kernel instead.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return 0, err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return 0, err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return 0, fmt.Errorf("index of %s: %w", dev, err)
		}
		return int(ifr.Uint32()), nil
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// sourceRouted returns the frames (Ethernet) that carry an IPv6 routing
// header or an IPv4 LSRR/SSRR option, with their IP destination.
func sourceRouted(frames [][]byte) []string {
	var out []string
	for _, f := range frames {
		if len(f) < 14 {
			continue
		}
		p := f[14:]
		switch binary.BigEndian.Uint16(f[12:14]) {
		case unix.ETH_P_IPV6:
			if len(p) < 40 {
				continue
			}
			nh, off := p[6], 40
			for i := 0; i < 4 && off+2 <= len(p); i++ {
				if nh == 43 {
					out = append(out, fmt.Sprintf("IPv6 to %s with routing header type %d", netip.AddrFrom16([16]byte(p[24:40])), p[off+2]))
					break
				}
				if nh != 0 && nh != 60 {
					break
				}
				nh, off = p[off], off+(int(p[off+1])+1)*8
			}
		case unix.ETH_P_IP:
			if len(p) < 20 || p[0]&0xf == 5 {
				continue
			}
			opts := p[20 : int(p[0]&0xf)*4]
			for i := 0; i < len(opts); {
				if opts[i] == 0 {
					break
				}
				if opts[i] == 1 {
					i++
					continue
				}
				if opts[i] == 0x83 || opts[i] == 0x89 {
					out = append(out, fmt.Sprintf("IPv4 to %s with source route", netip.AddrFrom4([4]byte(p[16:20]))))
					break
				}
				if i+1 >= len(opts) || opts[i+1] < 2 {
					break
				}
				i += int(opts[i+1])
			}
		}
	}
	return out
}

// runAttacker runs exe as scenario sc in cgroup cg and namespace ns ("" for
// the test's own), as uid 65534 unless asRoot. Interactive scenarios print
// "ready" and wait for a line on stdin: onReady runs then.
func runAttacker(t *testing.T, exe, cg, ns, sc string, env []string, asRoot bool, onReady func()) map[string]string {
	t.Helper()
	a := startAttacker(t, exe, cg, ns, sc, env, asRoot)
	if a.ready(t) {
		onReady()
	}
	return a.finish(t)
}

type attacker struct {
	cmd    *exec.Cmd
	sc     string
	stdin  io.WriteCloser
	rd     *bufio.Reader
	line   string
	arg    string // what followed "ready"
	stderr *bytes.Buffer
}

func startAttacker(t *testing.T, exe, cg, ns, sc string, env []string, asRoot bool) *attacker {
	t.Helper()
	cgfd, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()
	args := []string{"--net=/run/netns/" + ns}
	if !asRoot {
		args = append(args, "-S", "65534", "-G", "65534")
	}
	cmd := exec.Command("nsenter", append(args, "--", exe)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	if ns == "" { // the test's own namespace, the one the sweep sees
		cmd = exec.Command(exe)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
		if !asRoot {
			cmd.SysProcAttr.Credential = nobody
		}
	}
	cmd.Env = append(append(os.Environ(), attackEnv+"="+sc), env...)
	a := &attacker{cmd: cmd, sc: sc, stderr: &bytes.Buffer{}}
	a.stdin, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	a.rd = bufio.NewReader(stdout)
	return a
}

// ready reads the attacker's first line: true when it is "ready".
func (a *attacker) ready(t *testing.T) bool {
	a.line, _ = a.rd.ReadString('\n')
	f := strings.Fields(a.line)
	if len(f) > 1 && f[0] == "ready" {
		a.arg, a.line = f[1], "ready"
	}
	return strings.TrimSpace(a.line) == "ready"
}

func (a *attacker) finish(t *testing.T) map[string]string {
	t.Helper()
	if strings.TrimSpace(a.line) == "ready" {
		a.stdin.Write([]byte("go\n"))
		a.line, _ = a.rd.ReadString('\n')
	}
	a.cmd.Wait()
	res := map[string]string{}
	if err := json.Unmarshal([]byte(a.line), &res); err != nil {
		t.Fatalf("attacker %s: %q %v: %s", a.sc, a.line, err, a.stderr.String())
	}
	return res
}

// kernelConfig reports whether /proc/config.gz sets opt to y or m.
func kernelConfig(opt string) bool {
	out, err := exec.Command("sh", "-c", "zcat /proc/config.gz 2>/dev/null | grep -E '^"+opt+"=(y|m)$'").Output()
	return err == nil && len(out) > 0
}

// attackFamilies opens a socket of every non-inet family that needs no
// privilege.
func attackFamilies(res map[string]string) {
	for _, f := range unprivilegedFamilies {
		fd, err := unix.Socket(f.af, f.typ, 0)
		res[f.name] = errName(err)
		if err == nil {
			unix.Close(fd)
		}
	}
}
