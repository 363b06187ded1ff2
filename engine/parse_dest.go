package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseDest parses one destination entry, "CIDR [port N|N-M] [tcp|udp]".
// A bare address means a single host (/32, /128); the prefix is masked; an
// IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/N, N >= 96) becomes the IPv4
// prefix it covers, since such destinations are judged as IPv4.
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
	pfx, err := parsePrefix(f[0])
	if err != nil {
		return d, err
	}
	d.Prefix = pfx
	f = f[1:]
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
		default:
			return d, fmt.Errorf("unexpected %q (want CIDR [port N|N-M] [tcp|udp])", f[0])
		}
		f = f[1:]
	}
	if len(f) > 0 {
		return d, fmt.Errorf("unexpected %q after the protocol", f[0])
	}
	return d, nil
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
