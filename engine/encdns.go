package engine

import (
	"net/netip"
)

// Encrypted DNS hides lookups from exewall's forwarder, so a program whose
// rule has name entries could learn addresses its name entries never see
// (and reach them through a broad allow entry) or bypass a name it is
// denied. By default such a rule therefore also denies, outbound (DESIGN.md
// "Destination entries", docs/policy.md):
//   - DNS over TLS and DNS over QUIC: port 853, TCP and UDP, to anywhere;
//   - DNS over HTTPS to the well-known public resolvers below: their
//     addresses and their names, port 443 (TCP, and UDP for HTTP/3).
//
// A rule opts out of one of these by allowing it explicitly: an allow entry
// with the same prefix (or name) and an explicit port range covering the
// default's port, e.g. "0.0.0.0/0 port 853" or "dns.google port 443".

// DoTPort is the port of DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250).
const DoTPort = 853

// DoHAddrs are the anycast addresses of the well-known public DNS-over-HTTPS
// resolvers: Cloudflare, Google, Quad9, AdGuard, OpenDNS.
var DoHAddrs = []string{
	"1.1.1.1", "1.0.0.1", "1.1.1.2", "1.0.0.2", "1.1.1.3", "1.0.0.3",
	"2606:4700:4700::1111", "2606:4700:4700::1001", "2606:4700:4700::1112", "2606:4700:4700::1002",
	"2606:4700:4700::1113", "2606:4700:4700::1003",
	"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
	"9.9.9.9", "149.112.112.112", "9.9.9.11", "149.112.112.11", "2620:fe::fe", "2620:fe::9", "2620:fe::11",
	"94.140.14.14", "94.140.15.15", "2a10:50c0::ad1:ff", "2a10:50c0::ad2:ff",
	"208.67.222.222", "208.67.220.220", "2620:119:35::35", "2620:119:53::53",
}

// DoHNames are the names of well-known DNS-over-HTTPS endpoints (the
// names browsers and systemd-resolved ship with); a lookup of them by a
// program of a name rule binds their addresses, which are then denied on
// port 443.
var DoHNames = []string{
	"dns.google", "dns64.dns.google",
	"cloudflare-dns.com", "*.cloudflare-dns.com", "one.one.one.one",
	"dns.quad9.net", "dns9.quad9.net", "dns10.quad9.net", "dns11.quad9.net",
	"dns.adguard-dns.com", "dns.adguard.com",
	"doh.opendns.com", "dns.opendns.com",
	"dns.nextdns.io", "doh.mullvad.net", "dns.mullvad.net", "doh.cleanbrowsing.org",
}

// EncryptedDNSDenies are the deny entries a rule with name entries gets by
// default (before the rule's own opt-outs).
func EncryptedDNSDenies() []Dest {
	out := []Dest{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: DoTPort, PortHi: DoTPort, Dir: DirOut},
		{Prefix: netip.MustParsePrefix("::/0"), PortLo: DoTPort, PortHi: DoTPort, Dir: DirOut},
	}
	for _, a := range DoHAddrs {
		addr := netip.MustParseAddr(a)
		out = append(out, Dest{Prefix: netip.PrefixFrom(addr, addr.BitLen()), PortLo: 443, PortHi: 443, Dir: DirOut})
	}
	for _, n := range DoHNames {
		out = append(out, Dest{Name: n, PortLo: 443, PortHi: 443, Dir: DirOut})
	}
	return out
}

// WithEncryptedDNSDenied returns p with the default encrypted-DNS deny
// entries added to every rule that has a name entry, minus those the rule
// allows explicitly; p itself is returned when no rule has names. Every
// backend that enforces name entries compiles this policy, and the
// reference evaluator judges by it.
func WithEncryptedDNSDenied(p *Policy) *Policy {
	if p == nil || !p.HasNames() {
		return p
	}
	c := p.Clone()
	defaults := EncryptedDNSDenies()
	for i := range c.Rules {
		r := &c.Rules[i]
		if !r.HasNames() {
			continue
		}
		for _, d := range defaults {
			if !optedOut(r, d) {
				r.Deny = append(r.Deny, d)
			}
		}
	}
	return c
}

// optedOut reports whether r allows d's destination explicitly: an allow
// entry for the same prefix or name, with explicit ports covering d's,
// any protocol or both, in the outbound direction.
func optedOut(r *Rule, d Dest) bool {
	for _, a := range r.Allow {
		if a.Name != d.Name || a.Prefix != d.Prefix || a.AnyPort() || !a.Dir.Covers(DirOut) {
			continue
		}
		if a.PortLo <= d.PortLo && a.PortHi >= d.PortHi && a.Proto == ProtoAny {
			return true
		}
	}
	return false
}
