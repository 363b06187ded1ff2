package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// exchangeFunc sends one query to server and returns its answer.
type exchangeFunc func(ctx context.Context, server netip.AddrPort, query []byte) ([]byte, error)

// handle answers one query: what to send back to the program, nil for
// nothing (the query was not a DNS query).
func (p *Proxy) handle(ctx context.Context, peer netip.AddrPort, tcp bool, query []byte, exchange exchangeFunc) []byte {
	q, out := p.begin(peer, tcp, query)
	if q == nil {
		return out
	}
	resp, err := exchange(ctx, q.server, query)
	return p.finish(q, resp, err)
}

// asked is a query under way: who asked, and what.
type asked struct {
	peer   netip.AddrPort
	tcp    bool
	rule   uint32
	server netip.AddrPort
	h      dnsmessage.Header
	q      dnsmessage.Question
}

// begin reads a query and finds who asked it. A nil *asked means it is
// answered already: out (nil: not a DNS query, dropped).
func (p *Proxy) begin(peer netip.AddrPort, tcp bool, query []byte) (*asked, []byte) {
	p.queries.Add(1)
	h, q, err := queryInfo(query)
	if err != nil {
		p.failures.Add(1)
		return nil, nil
	}
	rule, server, ok := p.cfg.Origin.Origin(peer, tcp)
	if !ok || p.isSelf(server) {
		// Unknown, or addressed to the forwarder itself (a loop).
		p.failures.Add(1)
		p.log.Debug("dns query of unknown origin", "peer", peer, "tcp", tcp, "server", server)
		return nil, servfail(h, q)
	}
	return &asked{peer: peer, tcp: tcp, rule: rule, server: server, h: h, q: q}, nil
}

// finish puts the upstream answer's bindings in force and returns what to
// send back to the program.
func (p *Proxy) finish(a *asked, resp []byte, err error) []byte {
	if err != nil {
		p.failures.Add(1)
		p.log.Debug("dns upstream failed", "server", a.server, "err", err)
		return servfail(a.h, a.q)
	}
	bs, err := p.learn(a.rule, a.server, a.h, a.q, resp)
	if err != nil {
		p.failures.Add(1)
		p.log.Warn("dns answer withheld", "rule", a.rule, "server", a.server, "name", a.q.Name.String(), "err", err)
		return servfail(a.h, a.q)
	}
	if p.cfg.Observe != nil && len(bs) > 0 {
		p.cfg.Observe(a.peer, a.tcp, bs)
	}
	p.answers.Add(1)
	return resp
}

// isSelf reports whether server is one of the forwarder's own addresses.
func (p *Proxy) isSelf(server netip.AddrPort) bool {
	u4, u6, t4, t6 := p.Addrs()
	server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	return server == u4 || server == u6 || server == t4 || server == t6
}

// learn puts the answer's bindings in force before it is released. An
// answer that does not parse teaches nothing and is released as it is: the
// program may read addresses from it, but none of them is bound, so a
// name entry allows none of them.
// It returns the bindings put in force.
func (p *Proxy) learn(rule uint32, server netip.AddrPort, h dnsmessage.Header, q dnsmessage.Question, resp []byte) ([]Binding, error) {
	if p.cfg.Trusted != nil && !p.cfg.Trusted(server) {
		return nil, nil
	}
	a, err := ParseAnswer(resp)
	if err != nil {
		p.log.Debug("dns answer not parsed", "server", server, "err", err)
		return nil, nil
	}
	if a.ID != h.ID || a.Question != canon(q.Name) || a.Type != q.Type {
		return nil, fmt.Errorf("answer for %q (id %d) does not match the query", a.Question, a.ID)
	}
	if len(a.Records) == 0 {
		return nil, nil
	}
	now := time.Now()
	bs := make([]Binding, 0, len(a.Records))
	for _, r := range a.Records {
		ttl := min(max(time.Duration(r.TTL)*time.Second, p.cfg.TTLFloor), p.cfg.TTLCeiling)
		bs = append(bs, Binding{Rule: rule, Names: r.Names, Addr: r.Addr, Expires: now.Add(ttl)})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	bs = p.tab.merge(bs)
	if err := p.cfg.Learner.Learn(bs); err != nil {
		return nil, fmt.Errorf("learn: %w", err)
	}
	p.bindings.Add(uint64(len(bs)))
	if evicted := p.tab.insert(bs); len(evicted) > 0 {
		p.evictions.Add(uint64(len(evicted)))
		if err := p.cfg.Learner.Forget(evicted); err != nil {
			p.log.Warn("dns bindings not forgotten", "err", err)
		}
	}
	p.schedule()
	return bs, nil
}

// schedule arms the expiry timer for the earliest expiry. p.mu is held.
func (p *Proxy) schedule() {
	if p.tab.exp.Len() == 0 {
		return
	}
	at := time.Unix(0, p.tab.exp[0].at)
	if p.timer == nil {
		p.next = at
		p.timer = time.AfterFunc(time.Until(at), p.expire)
		return
	}
	if p.next.IsZero() || at.Before(p.next) {
		p.next = at
		p.timer.Reset(time.Until(at))
	}
}

// expire forgets the bindings whose time is up.
func (p *Proxy) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	gone, next := p.tab.expire(time.Now())
	if len(gone) > 0 {
		if err := p.cfg.Learner.Forget(gone); err != nil {
			p.log.Warn("expired dns bindings not forgotten", "err", err)
		}
	}
	p.next = next
	if !next.IsZero() {
		p.timer.Reset(time.Until(next))
	}
}

func (p *Proxy) serveUDP(ctx context.Context, c *net.UDPConn) error {
	buf := make([]byte, maxMsg)
	for {
		n, peer, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dnsproxy: read udp: %w", err)
		}
		select {
		case p.inflight <- struct{}{}:
		default:
			p.queries.Add(1)
			p.failures.Add(1) // flooded: dropped, the client retries
			continue
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			defer func() { <-p.inflight }()
			if out := p.handle(ctx, peer, false, query, p.exchangeUDP); out != nil {
				c.WriteToUDPAddrPort(out, peer)
			}
		}()
	}
}

// exchangeUDP asks server from a connected socket of the forwarder's own
// (reused from a small pool per server) and waits for the answer with the
// query's ID and question; anything else arriving on the socket (a late
// answer to an earlier query) is dropped. A truncated answer is returned as
// it is: the client retries over TCP.
func (p *Proxy) exchangeUDP(ctx context.Context, server netip.AddrPort, query []byte) ([]byte, error) {
	c, err := p.upstreams.get(ctx, p, server)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(p.cfg.Timeout))
	if _, err := c.Write(query); err != nil {
		c.Close()
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, err
		}
		if answers(buf[:n], query) {
			p.upstreams.put(server, c)
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// answers reports whether msg is the answer to query: its ID, the
// response bit and the same question.
func answers(msg, query []byte) bool {
	return len(msg) >= 12 && len(query) >= 12 && msg[0] == query[0] && msg[1] == query[1] && msg[2]&0x80 != 0 &&
		sameQuestion(msg[12:], query[12:questionEnd(query)])
}

// sameQuestion compares the question an answer repeats with the query's
// (the bytes after the header; names case-insensitively): a late answer to
// an earlier query with the same ID is not taken for this one.
func sameQuestion(ans, q []byte) bool {
	if len(ans) < len(q) {
		return false
	}
	for i := range q {
		x, y := ans[i], q[i]
		if x != y && x|0x20 != y|0x20 {
			return false
		}
	}
	return true
}

// questionEnd is the offset after a message's first question (its name
// as labels or a compression pointer, then type and class), or 12 when it
// cannot be read.
func questionEnd(msg []byte) int {
	i := 12
	for i < len(msg) {
		l := int(msg[i])
		switch {
		case l == 0:
			i++
		case l&0xc0 == 0xc0:
			i += 2
		default:
			i += 1 + l
			continue
		}
		if i+4 > len(msg) {
			return 12
		}
		return i + 4
	}
	return 12
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxMsg); return &b }}

// Upstream UDP sockets are reused for speed (a fresh socket per query
// costs about 80 µs on loopback, measured with BenchmarkForward), but not
// for long: each is retired after maxUses queries or maxAge, so its source
// port, which an off-path attacker forging answers would have to guess
// with the ID, keeps changing. maxIdlePerServer bounds the idle sockets
// kept per server.
const (
	maxIdlePerServer = 16
	maxUses          = 32
	maxAge           = 5 * time.Second
)

// upConn is a connected UDP socket to one server.
type upConn struct {
	net.Conn
	born time.Time
	uses int
}

// connPool keeps idle connected UDP sockets per upstream server.
type connPool struct {
	mu   sync.Mutex
	idle map[netip.AddrPort][]*upConn
}

func (cp *connPool) get(ctx context.Context, p *Proxy, server netip.AddrPort) (*upConn, error) {
	cp.mu.Lock()
	for l := cp.idle[server]; len(l) > 0; l = cp.idle[server] {
		c := l[len(l)-1]
		cp.idle[server] = l[:len(l)-1]
		if time.Since(c.born) < maxAge {
			cp.mu.Unlock()
			return c, nil
		}
		c.Close()
	}
	cp.mu.Unlock()
	c, err := p.dialer.DialContext(ctx, "udp", server.String())
	if err != nil {
		return nil, err
	}
	return &upConn{Conn: c, born: time.Now()}, nil
}

func (cp *connPool) put(server netip.AddrPort, c *upConn) {
	c.uses++
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.idle == nil {
		cp.idle = map[netip.AddrPort][]*upConn{}
	}
	if c.uses >= maxUses || time.Since(c.born) >= maxAge ||
		len(cp.idle[server]) >= maxIdlePerServer || len(cp.idle) >= maxInflight {
		c.Close()
		return
	}
	cp.idle[server] = append(cp.idle[server], c)
}

func (cp *connPool) closeAll() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for s, l := range cp.idle {
		for _, c := range l {
			c.Close()
		}
		delete(cp.idle, s)
	}
}

func (p *Proxy) serveTCP(ctx context.Context, l *net.TCPListener) error {
	for {
		select {
		case p.tcpSlots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.AcceptTCP()
		if err != nil {
			<-p.tcpSlots
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dnsproxy: accept tcp: %w", err)
		}
		go func() {
			defer func() { <-p.tcpSlots }()
			p.serveConn(ctx, c)
		}()
	}
}

// serveConn answers the length-prefixed queries of one TCP connection in
// order, over one upstream connection of its own.
func (p *Proxy) serveConn(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	up := &tcpUpstream{p: p}
	defer up.close()
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		query, err := readMsg(c)
		if err != nil {
			return
		}
		out := p.handle(ctx, peer, true, query, up.exchange)
		if out == nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(p.cfg.Timeout))
		if err := writeMsg(c, out); err != nil {
			return
		}
	}
}

// tcpUpstream is the connection to the server one client connection asks.
type tcpUpstream struct {
	p      *Proxy
	c      net.Conn
	server netip.AddrPort
}

func (u *tcpUpstream) exchange(ctx context.Context, server netip.AddrPort, query []byte) ([]byte, error) {
	for try := 0; ; try++ {
		fresh := false
		if u.c == nil || u.server != server {
			u.close()
			c, err := u.p.dialer.DialContext(ctx, "tcp", server.String())
			if err != nil {
				return nil, err
			}
			u.c, u.server, fresh = c, server, true
		}
		u.c.SetDeadline(time.Now().Add(u.p.cfg.Timeout))
		err := writeMsg(u.c, query)
		var resp []byte
		if err == nil {
			resp, err = readMsg(u.c)
		}
		if err == nil {
			if len(resp) < 2 || resp[0] != query[0] || resp[1] != query[1] {
				u.close()
				return nil, errors.New("upstream answer id does not match the query")
			}
			return resp, nil
		}
		u.close()
		if fresh || try > 0 {
			return nil, err
		}
		// The server closed an idle connection: redial once.
	}
}

func (u *tcpUpstream) close() {
	if u.c != nil {
		u.c.Close()
		u.c = nil
	}
}

func readMsg(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeMsg(w io.Writer, msg []byte) error {
	if len(msg) > maxMsg {
		return errors.New("dns message too long")
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}
