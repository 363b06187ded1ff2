//go:build linux

package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The UDP path on Linux keeps the Go netpoller and goroutine hand-offs off
// the common case: one OS thread (locked) per listening socket blocks in
// recvfrom and answers a query itself, asking the upstream server over a
// blocking connected socket of its own. On a virtualised host every
// wake-up counts: this path has as many as the cheapest possible forwarder
// (bench/, DNS section, FLOOR). One thread, not several: the kernel wakes
// the waiter that waited longest, whose Go P the runtime has by then
// handed away, and getting one back is another wake-up (BenchmarkForward:
// +27 to +47 µs at p50 with one thread, +51 to +85 µs with two or four).
//
// An upstream that has not answered within fastWait is handed to a
// goroutine (the netpoller path, bounded by maxInflight) and the thread
// takes the next query; that server is then asked asynchronously for
// slowFor, so a slow server (one across the network, not a local cache)
// holds no query up for more than fastWait once.
const (
	udpWorkers = 1
	fastWait   = 2 * time.Millisecond
	slowFor    = time.Second
)

// serveUDPFast serves c with the workers until ctx is done.
func (p *Proxy) serveUDPFast(ctx context.Context, c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return p.serveUDP(ctx, c)
	}
	// The workers' own descriptor of the socket: closing c cannot hand
	// its number to another file under them, and shutting it down wakes
	// them all.
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return p.serveUDP(ctx, c)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return p.serveUDP(ctx, c)
	}
	var wg sync.WaitGroup
	errc := make(chan error, udpWorkers)
	for range udpWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- p.udpWorker(ctx, fd, c) }()
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	unix.Shutdown(fd, unix.SHUT_RDWR)
	wg.Wait()
	unix.Close(fd)
	return err
}

// fastUp is a worker's connected socket to one upstream server, in
// blocking mode with a receive timeout of fastWait.
type fastUp struct {
	c    net.Conn
	fd   int
	born time.Time
	uses int
}

func (p *Proxy) udpWorker(ctx context.Context, fd int, c *net.UDPConn) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ups := map[netip.AddrPort]*fastUp{}
	slow := map[netip.AddrPort]time.Time{} // servers lately slower than fastWait
	defer func() {
		for _, u := range ups {
			u.c.Close()
		}
	}()
	buf := make([]byte, maxMsg)
	ans := make([]byte, maxMsg)
	for {
		n, sa, err := unix.Recvfrom(fd, buf, 0)
		if ctx.Err() != nil {
			return nil
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("dnsproxy: read udp: %w", err)
		}
		peer, ok := sockaddrPort(sa)
		if !ok {
			if sa == nil {
				return nil // shut down
			}
			continue
		}
		query := buf[:n]
		q, out := p.begin(peer, false, query)
		if q == nil {
			if out != nil {
				unix.Sendto(fd, out, 0, sa)
			}
			continue
		}
		wait := time.Now().After(slow[q.server])
		resp, err := p.fastExchange(ups, q.server, query, ans, wait)
		if errors.Is(err, errSlow) {
			if wait {
				if len(slow) >= maxIdlePerServer {
					clear(slow)
				}
				slow[q.server] = time.Now().Add(slowFor)
			}
			p.slowExchange(ctx, ups, q, append([]byte(nil), query...), c)
			continue
		}
		if out := p.finish(q, resp, err); out != nil {
			unix.Sendto(fd, out, 0, sa)
		}
	}
}

var errSlow = errors.New("upstream slower than the fast path waits")

// fastExchange asks server over the worker's blocking socket and waits up
// to fastWait (not at all unless wait): errSlow then, the socket is left in
// ups for slowExchange. The answer is in ans (overwritten by the next call).
func (p *Proxy) fastExchange(ups map[netip.AddrPort]*fastUp, server netip.AddrPort, query, ans []byte, wait bool) ([]byte, error) {
	u := ups[server]
	if u != nil && (u.uses >= maxUses || time.Since(u.born) >= maxAge) {
		u.c.Close()
		delete(ups, server)
		u = nil
	}
	if u == nil {
		var err error
		if u, err = p.dialFast(server); err != nil {
			return nil, err
		}
		if len(ups) >= maxIdlePerServer {
			for s, o := range ups { // drop any one: a worker rarely asks many servers
				o.c.Close()
				delete(ups, s)
				break
			}
		}
		ups[server] = u
	}
	u.uses++
	if _, err := unix.Write(u.fd, query); err != nil {
		u.c.Close()
		delete(ups, server)
		return nil, err
	}
	if !wait {
		return nil, errSlow
	}
	for {
		n, err := unix.Read(u.fd, ans)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
			return nil, errSlow
		}
		if err != nil {
			u.c.Close()
			delete(ups, server)
			return nil, err
		}
		if answers(ans[:n], query) {
			return ans[:n], nil
		}
		// A late answer to an earlier query: dropped.
	}
}

// dialFast opens a connected UDP socket to server (through the Proxy's
// dialer: its Control applies) and makes it blocking with a receive
// timeout of fastWait.
func (p *Proxy) dialFast(server netip.AddrPort) (*fastUp, error) {
	c, err := p.dialer.Dial("udp", server.String())
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		c.Close()
		return nil, errors.New("dnsproxy: upstream socket has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	u := &fastUp{c: c, fd: -1, born: time.Now()}
	var serr error
	rc.Control(func(fd uintptr) {
		tv := unix.NsecToTimeval(fastWait.Nanoseconds())
		if serr = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); serr == nil {
			serr = unix.SetNonblock(int(fd), false)
		}
		u.fd = int(fd)
	})
	if serr != nil {
		c.Close()
		return nil, serr
	}
	return u, nil
}

// slowExchange waits for the rest of the answer in a goroutine, on the
// netpoller, with the socket taken from the worker. Beyond maxInflight the
// query is dropped (the client retries).
func (p *Proxy) slowExchange(ctx context.Context, ups map[netip.AddrPort]*fastUp, q *asked, query []byte, c *net.UDPConn) {
	u := ups[q.server]
	delete(ups, q.server)
	if u == nil {
		return
	}
	select {
	case p.inflight <- struct{}{}:
	default:
		u.c.Close()
		p.failures.Add(1)
		return
	}
	// Back to non-blocking: the Go runtime reads it from now on.
	unix.SetNonblock(u.fd, true)
	go func() {
		defer func() { <-p.inflight }()
		defer u.c.Close()
		stop := context.AfterFunc(ctx, func() { u.c.SetDeadline(time.Now()) })
		defer stop()
		u.c.SetDeadline(time.Now().Add(p.cfg.Timeout - fastWait))
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf := *bp
		var resp []byte
		var err error
		for {
			var n int
			if n, err = u.c.Read(buf); err != nil {
				break
			}
			if answers(buf[:n], query) {
				resp = buf[:n]
				break
			}
		}
		if out := p.finish(q, resp, err); out != nil {
			c.WriteToUDPAddrPort(out, q.peer)
		}
	}()
}

func sockaddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
