//go:build linux

package kerneltest

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

// testRanges are where a client may send besides loopback: the
// documentation and benchmarking ranges the tests' namespaces use.
var testRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func allowedDest(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	for _, p := range testRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var held = -1

func clientMain() int {
	// Keep the main goroutine on the leader thread, so "thread" steps run
	// on another one.
	runtime.LockOSThread()
	var attempts []Attempt
	in := json.NewDecoder(os.Stdin)
	if err := in.Decode(&attempts); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 2
	}
	for _, a := range attempts {
		if addr, err := netip.ParseAddr(a.Addr); err == nil && !allowedDest(addr) {
			fmt.Fprintf(os.Stderr, "client: %s is neither loopback nor a test network\n", addr)
			return 2
		}
	}
	out := make([]Outcome, len(attempts))
	for i, a := range attempts {
		switch a.Op {
		case "ready":
			fmt.Println("ready")
		case "wait":
			var word string
			in.Decode(&word)
		case "sleep":
			time.Sleep(time.Duration(a.Millis) * time.Millisecond)
		case "tcploop":
			out[i] = connectLoop(a)
		case "loop":
			out[i] = sendLoop(a)
		case "thread":
			out[i] = fromThread(a)
		default:
			if a.Repeat > 0 || a.Until > 0 {
				out[i] = repeat(a)
			} else {
				out[i] = try(a)
			}
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// fromThread connects from a fresh OS thread that is not the thread group
// leader.
func fromThread(a Attempt) Outcome {
	ch := make(chan Outcome)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if unix.Gettid() == unix.Getpid() {
			ch <- Outcome{Err: "still on the main thread"}
			return
		}
		a.Op = "connect"
		ch <- try(a)
	}()
	return <-ch
}

// repeat makes one attempt many times and counts how they ended.
func repeat(a Attempt) Outcome {
	o := Outcome{Counts: map[string]int{}}
	base := a.Port
	for i := 0; a.Until > 0 || i < a.Repeat; i++ {
		if a.Until > 0 && i%256 == 0 && time.Now().UnixNano() > a.Until {
			break
		}
		if a.Spread > 1 {
			a.Port = base + uint16(i%a.Spread)
		}
		r := try(a)
		word := r.Errno
		if word == "" && r.Err == "" {
			word = "ok"
		} else if word == "" {
			word = r.Err
		}
		if i == 0 {
			o.Errno, o.Err = r.Errno, r.Err
		}
		o.Counts[word]++
	}
	return o
}

func try(a Attempt) Outcome {
	if a.Op == "use-held" {
		return useHeld()
	}
	addr := netip.IPv6Unspecified()
	if a.Sock == 4 {
		addr = netip.IPv4Unspecified()
	}
	if a.Op != "socket" {
		var err error
		if addr, err = netip.ParseAddr(a.Addr); err != nil {
			return Outcome{Err: err.Error()}
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
		return Outcome{}
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
		return Outcome{Err: "unknown op " + a.Op}
	}
	if err == nil || errors.Is(err, unix.ECONNREFUSED) {
		return Outcome{}
	}
	return errOutcome(err)
}

// connectLoop times 20000 socket+connect+close to a TCP listener.
func connectLoop(a Attempt) Outcome {
	sa := &unix.SockaddrInet4{Port: int(a.Port), Addr: netip.MustParseAddr(a.Addr).As4()}
	n := 20000
	start := time.Now()
	for range n {
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
	return Outcome{Err: fmt.Sprint(time.Since(start).Nanoseconds() / int64(n))}
}

// sendLoop times 200000 unconnected UDP sends on one socket.
func sendLoop(a Attempt) Outcome {
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: int(a.Port), Addr: netip.MustParseAddr(a.Addr).As4()}
	n := 200000
	start := time.Now()
	for range n {
		if err := unix.Sendto(fd, []byte("x"), 0, sa); err != nil {
			return errOutcome(err)
		}
	}
	return Outcome{Err: fmt.Sprint(time.Since(start).Nanoseconds() / int64(n))}
}

// useHeld sends on the held connection and waits for the echo.
func useHeld() Outcome {
	if held < 0 {
		return Outcome{Err: "nothing held"}
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
		return Outcome{Errno: "EOF"}
	}
	return Outcome{}
}

func errOutcome(err error) Outcome {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return Outcome{Errno: unix.ErrnoName(errno), Err: err.Error()}
	}
	return Outcome{Err: err.Error()}
}
