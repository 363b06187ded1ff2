//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"runtime"

	"golang.org/x/sys/unix"
)

// dnsFloor is the cheapest userspace UDP hop this machine allows, the
// FLOOR row of the DNS section: a forwarder that only receives a datagram,
// sends it to its upstream over a connected socket, receives the answer
// and sends it back. No parsing, no attribution, no kernel maps; blocking
// syscalls on one locked OS thread (no netpoller, no goroutine hand-off).
// Whatever exewall's forwarder adds beyond this floor is its own cost.
type dnsFloor struct {
	lfd, ufd int
	addr     netip.AddrPort
	done     chan struct{}
}

func newDNSFloor(listen, upstream netip.AddrPort) (*dnsFloor, error) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("floor socket: %w", err)
	}
	ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(lfd)
		return nil, fmt.Errorf("floor socket: %w", err)
	}
	f := &dnsFloor{lfd: lfd, ufd: ufd, addr: listen}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: int(listen.Port()), Addr: listen.Addr().As4()}); err != nil {
		f.close()
		return nil, fmt.Errorf("floor bind %s: %w", listen, err)
	}
	if err := unix.Connect(ufd, &unix.SockaddrInet4{Port: int(upstream.Port()), Addr: upstream.Addr().As4()}); err != nil {
		f.close()
		return nil, fmt.Errorf("floor connect %s: %w", upstream, err)
	}
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(ufd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	f.done = make(chan struct{})
	go f.run()
	return f, nil
}

func (f *dnsFloor) run() {
	defer close(f.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q := make([]byte, 1500)
	a := make([]byte, 1500)
	for {
		n, from, err := unix.Recvfrom(f.lfd, q, 0)
		if err == unix.EBADF || err == nil && from == nil {
			return // shut down
		}
		if err != nil || n < 2 {
			continue
		}
		if _, err := unix.Write(f.ufd, q[:n]); err != nil {
			continue
		}
		for {
			m, err := unix.Read(f.ufd, a)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break // no answer: the client times out
			}
			if m >= 2 && a[0] == q[0] && a[1] == q[1] {
				unix.Sendto(f.lfd, a[:m], 0, from)
				break
			}
			// A late answer to an earlier query: dropped.
		}
	}
}

// close wakes the blocked receive (shutdown does, even on an unconnected
// UDP socket) and closes both sockets.
func (f *dnsFloor) close() error {
	unix.Shutdown(f.lfd, unix.SHUT_RDWR)
	unix.Shutdown(f.ufd, unix.SHUT_RDWR)
	if f.done != nil {
		<-f.done
	}
	unix.Close(f.ufd)
	return unix.Close(f.lfd)
}
