package engine

import (
	"net"
	"net/netip"
)

// LocalRanges are the destinations `local-only` always allows: loopback,
// RFC 1918, link-local, IPv6 ULA and link-local.
var LocalRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// MetadataAddrs are cloud metadata services: inside the local ranges, yet
// never local, since they hand out credentials. Allow them explicitly.
var MetadataAddrs = []netip.Prefix{
	netip.MustParsePrefix("169.254.169.254/32"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
}

// IsLocal reports whether a destination counts as local for `local-only`,
// given the host's own on-link subnets.
func IsLocal(a netip.Addr, hostNets []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range MetadataAddrs {
		if p.Contains(a) {
			return false
		}
	}
	for _, p := range LocalRanges {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range hostNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// InterfaceNets returns the subnets of this host's interfaces, loopback
// left out: what `local-only` allows besides LocalRanges. It is the
// Manager's default ManagerConfig.HostNets.
func InterfaceNets() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		bits, total := n.Mask.Size()
		if addr.Is4() && total == 128 {
			bits -= 96
		}
		p := netip.PrefixFrom(addr, bits)
		if p.IsValid() && !addr.IsLoopback() {
			out = append(out, p.Masked())
		}
	}
	return out
}
