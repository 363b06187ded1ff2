package engine

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseDest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Dest
		str  string
	}{
		{"10.0.0.0/8", Dest{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, "10.0.0.0/8"},
		{"10.1.2.3/8", Dest{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, "10.0.0.0/8"},
		{"192.0.2.7", Dest{Prefix: netip.MustParsePrefix("192.0.2.7/32")}, "192.0.2.7/32"},
		{"2001:db8::1", Dest{Prefix: netip.MustParsePrefix("2001:db8::1/128")}, "2001:db8::1/128"},
		{"2001:db8:1::/32", Dest{Prefix: netip.MustParsePrefix("2001:db8::/32")}, "2001:db8::/32"},
		{"::/0", Dest{Prefix: netip.MustParsePrefix("::/0")}, "::/0"},
		{"0.0.0.0/0 tcp", Dest{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Proto: ProtoTCP}, "0.0.0.0/0 tcp"},
		{"::ffff:1.2.3.4", Dest{Prefix: netip.MustParsePrefix("1.2.3.4/32")}, "1.2.3.4/32"},
		{"::ffff:1.2.3.4/120", Dest{Prefix: netip.MustParsePrefix("1.2.3.0/24")}, "1.2.3.0/24"},
		{"::ffff:0:0/96", Dest{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, "0.0.0.0/0"},
		{"::ffff:1.2.3.4/64", Dest{Prefix: netip.MustParsePrefix("::/64")}, "::/64"},
		{"203.0.113.0/24 port 443 tcp", Dest{Prefix: netip.MustParsePrefix("203.0.113.0/24"), PortLo: 443, PortHi: 443, Proto: ProtoTCP}, "203.0.113.0/24 port 443 tcp"},
		{"  10.0.0.0/8\tport  1-1024  udp ", Dest{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLo: 1, PortHi: 1024, Proto: ProtoUDP}, "10.0.0.0/8 port 1-1024 udp"},
		{"10.0.0.0/8 port 53-53", Dest{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLo: 53, PortHi: 53}, "10.0.0.0/8 port 53"},
		{"10.0.0.0/8 port 65535", Dest{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLo: 65535, PortHi: 65535}, "10.0.0.0/8 port 65535"},
		{"2001:db8::/32 port 443", Dest{Prefix: netip.MustParsePrefix("2001:db8::/32"), PortLo: 443, PortHi: 443}, "2001:db8::/32 port 443"},
		{"0.0.0.0/0 port 443 tcp in", Dest{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PortLo: 443, PortHi: 443, Proto: ProtoTCP, Dir: DirIn}, "0.0.0.0/0 port 443 tcp in"},
		{"::/0 out", Dest{Prefix: netip.MustParsePrefix("::/0"), Dir: DirOut}, "::/0 out"},
		{"API.GitHub.com. port 443 tcp", Dest{Name: "api.github.com", PortLo: 443, PortHi: 443, Proto: ProtoTCP}, "api.github.com port 443 tcp"},
		{"*.debian.org port 443 tcp", Dest{Name: "*.debian.org", PortLo: 443, PortHi: 443, Proto: ProtoTCP}, "*.debian.org port 443 tcp"},
		{"bücher.example in", Dest{Name: "xn--bcher-kva.example", Dir: DirIn}, "xn--bcher-kva.example in"},
		{"_dmarc.example.com udp", Dest{Name: "_dmarc.example.com", Proto: ProtoUDP}, "_dmarc.example.com udp"},
		{"localhost", Dest{Name: "localhost"}, "localhost"},
	} {
		got, err := ParseDest(tc.in)
		if err != nil {
			t.Errorf("ParseDest(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want || got.String() != tc.str {
			t.Errorf("ParseDest(%q) = %+v (%s), want %+v (%s)", tc.in, got, got, tc.want, tc.str)
		}
	}
}

func TestParseDestRefusals(t *testing.T) {
	for _, tc := range []struct{ in, phrase string }{
		{"", "empty"},
		{"   ", "empty"},
		{"10.0.0.0/33", "prefix length out of range"},
		{"10.0.0/8", "IPv4 address too short"},
		{"exa_mple..com", "empty label"},
		{"foo.*.example.com", "wildcard may only be"},
		{"*", "wildcard may only be"},
		{"-a.example.com", "invalid label"},
		{"a.123", "all digits"},
		{"ex ample.com", `unexpected "ample.com"`},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "longer than a DNS name"},
		{"10.0.0.0/8 tcp sideways", `unexpected "sideways"`},
		{"10.0.0.0/8 in out", `unexpected "out" after the direction`},
		{"example.com port 443 udp tcp", `unexpected "tcp"`},
		{"fe80::1%eth0", "zones are not allowed"},
		{"fe80::1%eth0/64", "zone"},
		{"10.0.0.0/8 port", "port needs"},
		{"10.0.0.0/8 port 0", "out of range"},
		{"10.0.0.0/8 port 65536", "out of range"},
		{"10.0.0.0/8 port 99999999999999999999", "out of range"},
		{"10.0.0.0/8 port -1", "not a number"},
		{"10.0.0.0/8 port 80-", "not a number"},
		{"10.0.0.0/8 port 0-80", "out of range"},
		{"10.0.0.0/8 port 90-80", "backwards"},
		{"10.0.0.0/8 port http", "not a number"},
		{"10.0.0.0/8 icmp", `unexpected "icmp"`},
		{"10.0.0.0/8 TCP", `unexpected "TCP"`},
		{"10.0.0.0/8 tcp port 80", `unexpected "port"`},
		{"10.0.0.0/8 port 80 tcp udp", `unexpected "udp"`},
		{"10.0.0.0/8 10.0.0.0/9", "unexpected"},
	} {
		_, err := ParseDest(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.phrase) || !strings.Contains(err.Error(), "bad destination") {
			t.Errorf("ParseDest(%q) = %v, want an error with %q", tc.in, err, tc.phrase)
		}
	}
}

func TestNameMatches(t *testing.T) {
	for _, tc := range []struct {
		entry, asked string
		want         bool
	}{
		{"api.github.com", "api.github.com", true},
		{"api.github.com", "API.GitHub.com.", true},
		{"api.github.com", "github.com", false},
		{"*.debian.org", "deb.debian.org", true},
		{"*.debian.org", "a.b.debian.org", true},
		{"*.debian.org", "debian.org", false},
		{"*.debian.org", "xdebian.org", false},
	} {
		if got := NameMatches(tc.entry, tc.asked); got != tc.want {
			t.Errorf("NameMatches(%q, %q) = %v", tc.entry, tc.asked, got)
		}
	}
}
