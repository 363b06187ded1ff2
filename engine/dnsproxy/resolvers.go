package dnsproxy

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Where the host's resolvers are written down: the resolv.conf programs
// read, and the one systemd-resolved writes with its real upstreams (the
// first one points at its local stub).
const (
	ResolvConf   = "/etc/resolv.conf"
	ResolvedConf = "/run/systemd/resolve/resolv.conf"
)

// stubs are the local stub resolvers whose upstreams are read from
// ResolvedConf: systemd-resolved listens on 127.0.0.53 (and 127.0.0.54 in
// proxy mode).
var stubs = []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("127.0.0.54")}

// TrustedResolvers returns the servers whose answers teach name entries
// (DESIGN.md "Destination entries"): the policy's resolvers: when it has
// any (a port of 0 is 53), else the host's (HostResolvers).
func TrustedResolvers(policy []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(policy) > 0 {
		out := make([]netip.AddrPort, 0, len(policy))
		for _, ap := range policy {
			out = appendServer(out, ap.Addr(), ap.Port())
		}
		return out, nil
	}
	return HostResolvers(ResolvConf, ResolvedConf)
}

// HostResolvers reads the nameservers of resolvConf; when one of them is a
// local stub (systemd-resolved), the stub's upstreams from stubConf are
// added after it (the stub stays: programs address it). A missing stubConf
// adds nothing.
func HostResolvers(resolvConf, stubConf string) ([]netip.AddrPort, error) {
	servers, err := readResolvConf(resolvConf)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, a := range servers {
		out = appendServer(out, a, 53)
		if !slices.Contains(stubs, a.Unmap()) {
			continue
		}
		up, err := readResolvConf(stubConf)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, u := range up {
			if !slices.Contains(stubs, u.Unmap()) {
				out = appendServer(out, u, 53)
			}
		}
	}
	return out, nil
}

func appendServer(out []netip.AddrPort, a netip.Addr, port uint16) []netip.AddrPort {
	if port == 0 {
		port = 53
	}
	ap := netip.AddrPortFrom(a.Unmap(), port)
	if slices.Contains(out, ap) {
		return out
	}
	return append(out, ap)
}

func readResolvConf(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseResolvConf(f)
}

// parseResolvConf returns the addresses of the nameserver lines (resolv.conf(5));
// lines it cannot read are skipped, as the C library does.
func parseResolvConf(r io.Reader) ([]netip.Addr, error) {
	var out []netip.Addr
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil {
			out = append(out, a)
		}
	}
	return out, s.Err()
}
