//go:build linux

package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the client program: copies of it are distinct
// executables (new inodes) the tests can allow or deny, and a process started
// from one runs clientMain instead of the tests.
const clientEnv = "EXEWALL_TEST_CLIENT"

// attempt is one connection attempt the client makes.
type attempt struct {
	Proto string `json:"proto"` // tcp | udp
	// connect | sendto | fastopen (TCP sendto with MSG_FASTOPEN) |
	// socket (create Kind only) | hold (TCP connect, keep it) |
	// use-held (write and read on the held connection) |
	// ready (print "ready") | wait (block until the test writes a line)
	Op   string `json:"op"`
	Kind string `json:"kind,omitempty"` // for socket: raw | ping | mptcp | sctp
	Sock int    `json:"sock"`           // 4 or 6: socket family (6 with a v4 address uses the mapped form)
	Addr string `json:"addr"`
	Port uint16 `json:"port"`
}

// outcome is what the client saw: "" when the kernel let the call through
// (ECONNREFUSED and friends count as through: the firewall did not stop it).
type outcome struct {
	Errno string `json:"errno"`
	Err   string `json:"err,omitempty"`
}

func (o outcome) denied() bool { return o.Errno == "EPERM" }

var held = -1

func clientMain() {
	// Keep the main goroutine on the leader thread, so "thread" steps run
	// on another one.
	runtime.LockOSThread()
	var attempts []attempt
	in := json.NewDecoder(os.Stdin)
	if err := in.Decode(&attempts); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	out := make([]outcome, len(attempts))
	for i, a := range attempts {
		switch a.Op {
		case "ready":
			fmt.Println("ready")
		case "wait":
			var go_ string
			in.Decode(&go_)
		case "tcploop":
			out[i] = connectLoop(a)
		case "loop":
			// Time N unconnected UDP sends on one socket (the benchmark's
			// shape); the result is ns per send in Err.
			out[i] = sendLoop(a)
		case "thread":
			// From a fresh OS thread that is not the thread group leader.
			ch := make(chan outcome)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
				if unix.Gettid() == unix.Getpid() {
					ch <- outcome{Err: "still on the main thread"}
					return
				}
				b := a
				b.Op = "connect"
				ch <- try(b)
			}()
			out[i] = <-ch
		default:
			out[i] = try(a)
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(0)
}

func try(a attempt) outcome {
	addr := netip.IPv6Unspecified()
	if a.Sock == 4 {
		addr = netip.IPv4Unspecified()
	}
	if a.Op != "socket" && a.Op != "use-held" {
		var err error
		if addr, err = netip.ParseAddr(a.Addr); err != nil {
			return outcome{Err: err.Error()}
		}
	}
	typ, proto := unix.SOCK_STREAM, 0
	if a.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	switch a.Kind {
	case "raw", "ping":
		typ, proto = unix.SOCK_DGRAM, unix.IPPROTO_ICMP
		if a.Kind == "raw" {
			typ = unix.SOCK_RAW
		}
		if a.Sock == 6 {
			proto = unix.IPPROTO_ICMPV6
		}
	case "mptcp":
		typ, proto = unix.SOCK_STREAM, unix.IPPROTO_MPTCP
	case "sctp":
		typ, proto = unix.SOCK_STREAM, unix.IPPROTO_SCTP
	}
	if a.Op == "use-held" {
		return useHeld()
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a.Sock == 6 {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(a.Port), Addr: addr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(a.Port), Addr: addr.Unmap().As4()}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return errOutcome(err)
	}
	if a.Op == "socket" {
		unix.Close(fd)
		return outcome{}
	}
	if a.Op == "hold" {
		held = fd
	} else {
		defer unix.Close(fd)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	switch a.Op {
	case "connect", "hold":
		err = unix.Connect(fd, sa)
	case "fastopen":
		err = unix.Sendto(fd, []byte("exewall"), unix.MSG_FASTOPEN, sa)
	case "sendto":
		err = unix.Sendto(fd, []byte("exewall"), 0, sa)
	default:
		return outcome{Err: "unknown op " + a.Op}
	}
	if err == nil || errors.Is(err, unix.ECONNREFUSED) {
		return outcome{}
	}
	return errOutcome(err)
}

// connectLoop times N socket+connect+close to a TCP listener.
func connectLoop(a attempt) outcome {
	sa := &unix.SockaddrInet4{Port: int(a.Port), Addr: netip.MustParseAddr(a.Addr).As4()}
	n := 20000
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return errOutcome(err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return errOutcome(err)
		}
		unix.Close(fd)
	}
	return outcome{Err: fmt.Sprint(time.Since(start).Nanoseconds() / int64(n))}
}

func sendLoop(a attempt) outcome {
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fd)
	addr := netip.MustParseAddr(a.Addr).As4()
	sa := &unix.SockaddrInet4{Port: int(a.Port), Addr: addr}
	n := 200000
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := unix.Sendto(fd, []byte("x"), 0, sa); err != nil {
			return errOutcome(err)
		}
	}
	return outcome{Err: fmt.Sprint(time.Since(start).Nanoseconds() / int64(n))}
}

// useHeld sends on the held connection and waits for the echo.
func useHeld() outcome {
	if held < 0 {
		return outcome{Err: "nothing held"}
	}
	if _, err := unix.Write(held, []byte("x")); err != nil {
		return errOutcome(err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(held, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1)
	n, err := unix.Read(held, buf)
	if err != nil {
		return errOutcome(err)
	}
	if n == 0 {
		return outcome{Errno: "EOF"}
	}
	return outcome{}
}

func errOutcome(err error) outcome {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return outcome{Errno: unix.ErrnoName(errno), Err: err.Error()}
	}
	return outcome{Err: err.Error()}
}
