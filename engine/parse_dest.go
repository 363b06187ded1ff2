package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseDest parses one destination entry,
// "CIDR|NAME [port N|N-M] [tcp|udp] [in|out]". A bare address means a single
// host (/32, /128); the prefix is masked; an IPv4-mapped IPv6 prefix
// (::ffff:a.b.c.d/N, N >= 96) becomes the IPv4 prefix it covers, since such
// destinations are judged as IPv4. Anything that is not an address is read
// as a DNS name (ParseName).
func ParseDest(s string) (Dest, error) {
	d, err := parseDest(s)
	if err != nil {
		return Dest{}, fmt.Errorf("bad destination %q: %w", s, err)
	}
	return d, nil
}

func parseDest(s string) (Dest, error) {
	var d Dest
	f := strings.Fields(s)
	if len(f) == 0 {
		return d, errors.New("empty")
	}
	if looksLikeAddress(f[0]) {
		pfx, err := parsePrefix(f[0])
		if err != nil {
			return d, err
		}
		d.Prefix = pfx
	} else {
		name, err := ParseName(f[0])
		if err != nil {
			return d, err
		}
		d.Name = name
	}
	f = f[1:]
	var err error
	if len(f) > 0 && f[0] == "port" {
		if len(f) < 2 {
			return d, errors.New("port needs a number or a range N-M")
		}
		if d.PortLo, d.PortHi, err = parsePorts(f[1]); err != nil {
			return d, err
		}
		f = f[2:]
	}
	if len(f) > 0 {
		switch f[0] {
		case "tcp":
			d.Proto = ProtoTCP
		case "udp":
			d.Proto = ProtoUDP
		case "in", "out":
		default:
			return d, fmt.Errorf("unexpected %q (want CIDR|NAME [port N|N-M] [tcp|udp] [in|out])", f[0])
		}
		if d.Proto != ProtoAny {
			f = f[1:]
		}
	}
	if len(f) > 0 {
		switch f[0] {
		case "in":
			d.Dir = DirIn
		case "out":
			d.Dir = DirOut
		default:
			return d, fmt.Errorf("unexpected %q after the protocol (want in or out)", f[0])
		}
		f = f[1:]
	}
	if len(f) > 0 {
		return d, fmt.Errorf("unexpected %q after the direction", f[0])
	}
	return d, nil
}

// looksLikeAddress tells an address or CIDR from a name: addresses hold a
// colon (IPv6) or a slash, or are all digits and dots (a malformed IPv4
// address is refused as an address, not taken as a name).
func looksLikeAddress(s string) bool {
	if strings.ContainsAny(s, ":/") {
		return true
	}
	return strings.Trim(s, "0123456789.") == ""
}

func parsePrefix(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, errors.New(netipReason(err))
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return pfx, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		if a.Zone() != "" {
			return pfx, errors.New("zones are not allowed")
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), nil
}

// netipReason drops netip's echo of the input, which we quote ourselves.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if lo > hi {
			return 0, 0, fmt.Errorf("port range %d-%d is backwards", lo, hi)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("port %q is not a number (want 1-65535)", s)
	}
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range (want 1-65535)", s)
	}
	return uint16(n), nil
}

// ParseResolver parses one entry of the policy's resolvers: list: an IP
// address, optionally with a port ("10.0.0.53", "10.0.0.53:5353",
// "[2001:db8::53]:53"). The port is 0 when not given, meaning 53.
func ParseResolver(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(s); err == nil {
		ap = netip.AddrPortFrom(a, 0)
	} else if ap, err = netip.ParseAddrPort(s); err != nil {
		return ap, fmt.Errorf("%q is not an IP address or address:port", s)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if err := checkResolver(ap); err != nil {
		return ap, fmt.Errorf("%q: %v", s, err)
	}
	return ap, nil
}

func checkResolver(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return errors.New("no address")
	case a.Zone() != "":
		return errors.New("zones are not allowed")
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("%s cannot be a DNS server", a)
	}
	return nil
}
