//go:build linux

package kerneltest

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/dns/dnsmessage"
)

// Zone is what a test DNS server (Net.ServeDNS with Zone.Answer) says:
// authoritative A, AAAA and CNAME records with one TTL, NXDOMAIN for names
// it does not have. It counts the queries it saw, by transport.
type Zone struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
	cname map[string]string
	ttl   uint32

	UDP, TCP atomic.Int64
}

// NewZone is an empty zone answering with ttl.
func NewZone(ttl uint32) *Zone {
	return &Zone{addrs: map[string][]netip.Addr{}, cname: map[string]string{}, ttl: ttl}
}

// Set adds addresses (A or AAAA by family) to name.
func (z *Zone) Set(name string, addrs ...netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.addrs[name] = append(z.addrs[name], addrs...)
}

// CNAME makes name an alias of target.
func (z *Zone) CNAME(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cname[name] = target
}

// SetTTL changes the TTL of the answers from now on.
func (z *Zone) SetTTL(ttl uint32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ttl = ttl
}

// Queries is how many queries the zone saw.
func (z *Zone) Queries() int64 { return z.UDP.Load() + z.TCP.Load() }

// Answer is the reply to query q, or nil for a message it cannot parse.
func (z *Zone) Answer(q []byte, tcp bool) []byte {
	if tcp {
		z.TCP.Add(1)
	} else {
		z.UDP.Add(1)
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	name := strings.TrimSuffix(strings.ToLower(qs[0].Name.String()), ".")
	_, known := z.addrs[name]
	_, alias := z.cname[name]
	rcode := dnsmessage.RCodeSuccess
	if !known && !alias {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(qs[0])
	b.StartAnswers()
	rh := func(n string, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(n + "."), Type: typ, Class: dnsmessage.ClassINET, TTL: z.ttl}
	}
	for range 8 {
		target, ok := z.cname[name]
		if !ok {
			break
		}
		b.CNAMEResource(rh(name, dnsmessage.TypeCNAME), dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target + ".")})
		name = target
	}
	for _, a := range z.addrs[name] {
		switch {
		case a.Is4() && qs[0].Type == dnsmessage.TypeA:
			b.AResource(rh(name, dnsmessage.TypeA), dnsmessage.AResource{A: a.As4()})
		case a.Is6() && qs[0].Type == dnsmessage.TypeAAAA:
			b.AAAAResource(rh(name, dnsmessage.TypeAAAA), dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	if !tcp && len(out) > 512 {
		out = out[:12] // too long for UDP: truncated, the client retries over TCP
		out[2] |= 0x02
		clear(out[4:12])
	}
	return out
}
