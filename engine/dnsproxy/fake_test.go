package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeServer is a DNS server of the test's own on loopback (UDP and TCP on
// one port): answer builds the response to each query.
type fakeServer struct {
	addr   netip.AddrPort
	answer func(q dnsmessage.Message) dnsmessage.Message
	mu     sync.Mutex
	sent   [][]byte // every response, as sent
}

func startServer(t testing.TB, answer func(q dnsmessage.Message) dnsmessage.Message) *fakeServer {
	t.Helper()
	var u *net.UDPConn
	var l *net.TCPListener
	var port int
	for try := 0; l == nil; try++ {
		var err error
		if u, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		port = u.LocalAddr().(*net.UDPAddr).Port
		if l, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			u.Close()
			if try > 8 {
				t.Fatalf("no port free for both udp and tcp: %v", err)
			}
		}
	}
	s := &fakeServer{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), answer: answer}
	t.Cleanup(func() { u.Close(); l.Close() })
	go func() {
		buf := make([]byte, maxMsg)
		for {
			n, peer, err := u.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if out := s.respond(buf[:n]); out != nil {
				u.WriteToUDPAddrPort(out, peer)
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					q, err := readMsg(c)
					if err != nil {
						return
					}
					if out := s.respond(q); out == nil || writeMsg(c, out) != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *fakeServer) respond(q []byte) []byte {
	var m dnsmessage.Message
	if err := m.Unpack(q); err != nil {
		return nil
	}
	r := s.answer(m)
	r.ID, r.Response = m.ID, true
	if r.Questions == nil {
		r.Questions = m.Questions
	}
	out, err := r.Pack()
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.sent = append(s.sent, out)
	s.mu.Unlock()
	return out
}

func (s *fakeServer) last() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sent) == 0 {
		return nil
	}
	return s.sent[len(s.sent)-1]
}

// fakeOrigin says every query came from rule to server.
type fakeOrigin struct {
	rule   uint32
	server netip.AddrPort
	ok     bool
}

func (o fakeOrigin) Origin(netip.AddrPort, bool) (uint32, netip.AddrPort, bool) {
	return o.rule, o.server, o.ok
}

// fakeLearner keeps what is in force, like the kernel maps would.
type fakeLearner struct {
	mu      sync.Mutex
	inForce map[key]Binding
	learned int
	forgot  []Binding
	fail    error
}

func newLearner() *fakeLearner { return &fakeLearner{inForce: map[key]Binding{}} }

func (l *fakeLearner) Learn(bs []Binding) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	for _, b := range bs {
		l.inForce[mkKey(b.Rule, b.Addr)] = b
		l.learned++
	}
	return nil
}

func (l *fakeLearner) Forget(bs []Binding) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range bs {
		delete(l.inForce, mkKey(b.Rule, b.Addr))
		l.forgot = append(l.forgot, b)
	}
	return nil
}

func (l *fakeLearner) get(rule uint32, a string) (Binding, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.inForce[mkKey(rule, netip.MustParseAddr(a))]
	return b, ok
}

func (l *fakeLearner) forgotten() []Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.forgot)
}

// startProxy runs a Proxy on 127.0.0.1 for the test's duration.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	cfg.Listen4 = netip.MustParseAddrPort("127.0.0.1:0")
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return p
}

func query(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}}}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// askUDP sends q to addr and returns the reply.
func askUDP(t testing.TB, addr netip.AddrPort, q []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxMsg)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func askTCP(t testing.TB, addr netip.AddrPort, qs ...[]byte) [][]byte {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var out [][]byte
	for _, q := range qs {
		if err := writeMsg(c, q); err != nil {
			t.Fatal(err)
		}
		r, err := readMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func rcode(t testing.TB, msg []byte) dnsmessage.RCode {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		t.Fatal(err)
	}
	return h.RCode
}

func a(name string, ttl uint32, addr string) dnsmessage.Resource {
	ip := netip.MustParseAddr(addr)
	h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl}
	if ip.Is4() {
		h.Type = dnsmessage.TypeA
		return dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: ip.As4()}}
	}
	h.Type = dnsmessage.TypeAAAA
	return dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}}
}

func cname(name string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name),
		Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: ttl},
		Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)}}
}

var errLearn = errors.New("map full")

// switchOrigin reports a rule the test changes between queries.
type switchOrigin struct {
	mu     sync.Mutex
	server netip.AddrPort
	rule   uint32
}

func (o *switchOrigin) set(rule uint32) { o.mu.Lock(); o.rule = rule; o.mu.Unlock() }

func (o *switchOrigin) Origin(netip.AddrPort, bool) (uint32, netip.AddrPort, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rule, o.server, true
}
