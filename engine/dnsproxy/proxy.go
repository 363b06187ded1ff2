package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Origin says, for a query that reached the forwarder from peer (the
// program's socket address as the forwarder sees it), which rule's program
// asked and which DNS server it addressed. ok false: unknown, the query is
// answered with SERVFAIL.
type Origin interface {
	Origin(peer netip.AddrPort, tcp bool) (rule uint32, server netip.AddrPort, ok bool)
}

// Binding is one address a rule's program received in a DNS answer: the
// CNAME chain that led to it (the asked name first), and when it expires.
type Binding struct {
	Rule    uint32
	Names   []string
	Addr    netip.Addr
	Expires time.Time
}

// Learner puts bindings in force (the kernel maps) and takes them out.
// Learn is called before the answer is released: when it returns an error
// the program gets SERVFAIL instead. Forget is called when a binding expires
// or is evicted. Calls are serialized by the Proxy.
type Learner interface {
	Learn(bs []Binding) error
	Forget(bs []Binding) error
}

// Defaults of Config's zero fields.
const (
	DefaultTTLFloor   = 10 * time.Second
	DefaultTTLCeiling = time.Hour
	DefaultPerRuleCap = 4096
	// DefaultTimeout bounds one upstream exchange.
	DefaultTimeout = 5 * time.Second
)

// Bounds on concurrent work, so a flood cannot grow memory without limit:
// UDP queries beyond maxInflight are dropped (the client retries), TCP
// connections beyond maxTCPConns wait in the listen backlog.
const (
	maxInflight = 512
	maxTCPConns = 128
	tcpIdle     = 10 * time.Second
	maxMsg      = 65535
)

// Config configures New.
type Config struct {
	// Listen4 and Listen6 are loopback addresses to listen on, UDP and TCP
	// on the same port (port 0: any free port). A zero AddrPort leaves that
	// family out.
	Listen4, Listen6 netip.AddrPort
	Origin           Origin
	Learner          Learner
	// TTLFloor and TTLCeiling clamp how long a binding lasts (0: the
	// defaults). PerRuleCap is the most bindings one rule holds; the least
	// recently answered is evicted (0: the default).
	TTLFloor, TTLCeiling time.Duration
	PerRuleCap           int
	// Control is set on the sockets that talk to upstream servers, e.g. to
	// mark them so the kernel does not send them back to the forwarder.
	Control func(network, address string, c syscall.RawConn) error
	// Trusted says whether answers from server may teach; nil: every server
	// Origin reports. An untrusted server's answer is released unlearned.
	Trusted func(server netip.AddrPort) bool
	// Observe, when set, is told every answer's bindings with the asker, once
	// they are in force and before the answer is released (e.g. to record a
	// learning session's lookups by executable: LearnLookups). It must not
	// block.
	Observe func(peer netip.AddrPort, tcp bool, bs []Binding)
	// Timeout bounds one upstream exchange (0: DefaultTimeout).
	Timeout time.Duration
	Log     *slog.Logger
}

// Stats are the forwarder's counters since New.
type Stats struct {
	Queries   uint64 `json:"queries"`   // queries received
	Answers   uint64 `json:"answers"`   // upstream answers released to the program
	Bindings  uint64 `json:"bindings"`  // bindings learned (new or refreshed)
	Evictions uint64 `json:"evictions"` // bindings evicted by the per-rule cap
	Failures  uint64 `json:"failures"`  // queries answered SERVFAIL or dropped
	InForce   int    `json:"in_force"`  // bindings in force now
}

// Proxy is the forwarder. Create it with New, run it with Serve.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	udp       [2]*net.UDPConn
	tcp       [2]*net.TCPListener
	dialer    net.Dialer
	upstreams connPool

	mu    sync.Mutex // serializes Learn/Forget with the table
	tab   *table
	timer *time.Timer
	next  time.Time

	queries, answers, bindings, evictions, failures atomic.Uint64
	inflight                                        chan struct{}
	tcpSlots                                        chan struct{}
}

// New opens the listeners. Serve starts answering.
func New(cfg Config) (*Proxy, error) {
	if cfg.Origin == nil || cfg.Learner == nil {
		return nil, errors.New("dnsproxy: Origin and Learner are required")
	}
	cfg.TTLFloor = orDur(cfg.TTLFloor, DefaultTTLFloor)
	cfg.TTLCeiling = orDur(cfg.TTLCeiling, DefaultTTLCeiling)
	if cfg.TTLCeiling < cfg.TTLFloor {
		return nil, fmt.Errorf("dnsproxy: ttl ceiling %s is below the floor %s", cfg.TTLCeiling, cfg.TTLFloor)
	}
	if cfg.PerRuleCap <= 0 {
		cfg.PerRuleCap = DefaultPerRuleCap
	}
	cfg.Timeout = orDur(cfg.Timeout, DefaultTimeout)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, log: cfg.Log, tab: newTable(cfg.PerRuleCap),
		dialer:   net.Dialer{Timeout: cfg.Timeout, Control: cfg.Control},
		inflight: make(chan struct{}, maxInflight), tcpSlots: make(chan struct{}, maxTCPConns)}
	for i, ap := range []netip.AddrPort{cfg.Listen4, cfg.Listen6} {
		if !ap.IsValid() {
			continue
		}
		if !ap.Addr().IsLoopback() {
			p.close()
			return nil, fmt.Errorf("dnsproxy: listen address %s is not loopback", ap)
		}
		if err := p.listen(i, ap); err != nil {
			p.close()
			return nil, err
		}
	}
	if p.udp[0] == nil && p.udp[1] == nil {
		return nil, errors.New("dnsproxy: no listen address")
	}
	return p, nil
}

// listen opens UDP and TCP on one port: the UDP port first, then TCP on
// the same number (retried a few times when port 0 chose one TCP has taken).
func (p *Proxy) listen(i int, ap netip.AddrPort) error {
	network := [2]string{"4", "6"}[i]
	var err error
	for try := 0; try < 8; try++ {
		var u *net.UDPConn
		if u, err = net.ListenUDP("udp"+network, net.UDPAddrFromAddrPort(ap)); err != nil {
			return fmt.Errorf("dnsproxy: listen udp %s: %w", ap, err)
		}
		port := u.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		var t *net.TCPListener
		t, err = net.ListenTCP("tcp"+network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), port)))
		if err == nil {
			p.udp[i], p.tcp[i] = u, t
			return nil
		}
		u.Close()
		if ap.Port() != 0 {
			break
		}
	}
	return fmt.Errorf("dnsproxy: listen tcp %s: %w", ap, err)
}

// Addrs returns the addresses listened on (zero for a family left out).
func (p *Proxy) Addrs() (udp4, udp6, tcp4, tcp6 netip.AddrPort) {
	get := func(a net.Addr) netip.AddrPort {
		switch a := a.(type) {
		case *net.UDPAddr:
			return a.AddrPort()
		case *net.TCPAddr:
			return a.AddrPort()
		}
		return netip.AddrPort{}
	}
	if p.udp[0] != nil {
		udp4, tcp4 = get(p.udp[0].LocalAddr()), get(p.tcp[0].Addr())
	}
	if p.udp[1] != nil {
		udp6, tcp6 = get(p.udp[1].LocalAddr()), get(p.tcp[1].Addr())
	}
	return
}

// Serve answers queries until ctx is done, then closes the listeners and
// returns nil. Bindings in force stay in force (and in the table) until
// they expire or the Proxy's owner takes them out.
func (p *Proxy) Serve(parent context.Context) error {
	// Every server stops when one fails, not only when parent is done.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for i := range p.udp {
		if p.udp[i] == nil {
			continue
		}
		wg.Add(2)
		go func(c *net.UDPConn) { defer wg.Done(); errc <- p.serveUDPFast(ctx, c) }(p.udp[i])
		go func(l *net.TCPListener) { defer wg.Done(); errc <- p.serveTCP(ctx, l) }(p.tcp[i])
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	p.close()
	wg.Wait()
	p.upstreams.closeAll()
	if parent.Err() != nil {
		return nil
	}
	return err
}

func (p *Proxy) close() {
	for i := range p.udp {
		if p.udp[i] != nil {
			p.udp[i].Close()
		}
		if p.tcp[i] != nil {
			p.tcp[i].Close()
		}
	}
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	n := p.tab.len()
	p.mu.Unlock()
	return Stats{Queries: p.queries.Load(), Answers: p.answers.Load(), Bindings: p.bindings.Load(),
		Evictions: p.evictions.Load(), Failures: p.failures.Load(), InForce: n}
}

// Bindings returns the bindings in force, by rule, then address; Names
// holds the names answered for the address, the latest chain first.
func (p *Proxy) Bindings() []Binding {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tab.list()
}

// TTLBounds returns the floor and ceiling bindings are clamped to.
func (p *Proxy) TTLBounds() (floor, ceiling time.Duration) {
	return p.cfg.TTLFloor, p.cfg.TTLCeiling
}

// Flush forgets every binding of the rules keep says no to (a rule removed
// or renumbered by a policy change), calling Learner.Forget for them.
func (p *Proxy) Flush(keep func(rule uint32) bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	gone := p.tab.removeIf(func(rule uint32) bool { return !keep(rule) })
	if len(gone) == 0 {
		return nil
	}
	return p.cfg.Learner.Forget(gone)
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
