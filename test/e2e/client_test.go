//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the client program: copies of it are distinct
// executables (new inodes) for rules to name. Started with clientEnv set,
// it makes connection attempts to loopback and prints one word each: "ok"
// when the kernel let the call through (a refused connection counts), or
// the errno name.
const clientEnv = "EXEWALL_E2E_CLIENT"

// clientMain: args are proto ("tcp4"), address, port, count.
func clientMain() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: client tcp4|tcp6|udp4 ADDR PORT COUNT")
		os.Exit(2)
	}
	addr := netip.MustParseAddr(os.Args[2])
	port, _ := strconv.Atoi(os.Args[3])
	count, _ := strconv.Atoi(os.Args[4])
	if !addr.Unmap().IsLoopback() {
		fmt.Fprintln(os.Stderr, "the e2e client talks to loopback only")
		os.Exit(2)
	}
	results := map[string]int{}
	var first string
	for i := 0; i < count; i++ {
		r := attempt(os.Args[1], addr, port)
		if i == 0 {
			first = r
		}
		results[r]++
	}
	if count == 1 {
		fmt.Println(first)
	} else {
		fmt.Println(results)
	}
	os.Exit(0)
}

func attempt(proto string, addr netip.Addr, port int) string {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port, Addr: addr.Unmap().As4()}
	switch proto {
	case "tcp6":
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	case "udp4":
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errName(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if typ == unix.SOCK_DGRAM {
		err = unix.Sendto(fd, []byte("exewall"), 0, sa)
	} else {
		err = unix.Connect(fd, sa)
	}
	if err == nil || errors.Is(err, unix.ECONNREFUSED) {
		return "ok"
	}
	return errName(err)
}

func errName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
