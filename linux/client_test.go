//go:build linux

package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
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
	Op    string `json:"op"`    // connect | sendto
	Sock  int    `json:"sock"`  // 4 or 6: socket family (6 with a v4 address uses the mapped form)
	Addr  string `json:"addr"`
	Port  uint16 `json:"port"`
}

// outcome is what the client saw: "" when the kernel let the call through
// (ECONNREFUSED and friends count as through: the firewall did not stop it).
type outcome struct {
	Errno string `json:"errno"`
	Err   string `json:"err,omitempty"`
}

func (o outcome) denied() bool { return o.Errno == "EPERM" }

func clientMain() {
	var attempts []attempt
	if err := json.NewDecoder(os.Stdin).Decode(&attempts); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	out := make([]outcome, len(attempts))
	for i, a := range attempts {
		out[i] = try(a)
	}
	json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(0)
}

func try(a attempt) outcome {
	addr, err := netip.ParseAddr(a.Addr)
	if err != nil {
		return outcome{Err: err.Error()}
	}
	typ := unix.SOCK_STREAM
	if a.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a.Sock == 6 {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(a.Port), Addr: addr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(a.Port), Addr: addr.Unmap().As4()}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errOutcome(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	switch a.Op {
	case "connect":
		err = unix.Connect(fd, sa)
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

func errOutcome(err error) outcome {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return outcome{Errno: unix.ErrnoName(errno), Err: err.Error()}
	}
	return outcome{Err: err.Error()}
}
