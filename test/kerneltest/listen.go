//go:build linux

package kerneltest

import (
	"fmt"
	"io"
	"net"
	"testing"
)

// ListenLoopback starts TCP listeners on 127.0.0.1 and [::1] with one port
// number that accept (and close) until the test ends.
func ListenLoopback(t testing.TB) uint16 {
	t.Helper()
	for range 20 {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err != nil {
			l4.Close()
			continue
		}
		for _, l := range []net.Listener{l4, l6} {
			go acceptAll(l)
			t.Cleanup(func() { l.Close() })
		}
		return uint16(port)
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// ListenEcho starts a TCP listener on 127.0.0.1 that echoes and keeps
// connections open until the test ends.
func ListenEcho(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(c, c)
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
