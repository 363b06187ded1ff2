package dnsproxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestHostResolvers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aps := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.MustParseAddrPort(s))
		}
		return out
	}
	plain := write("plain", "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver 2001:db8::53\nnameserver bogus\nnameserver 10.0.0.2\noptions edns0\n")
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
	up := write("upstreams", "nameserver 192.0.2.53\nnameserver 127.0.0.53\n")
	for _, c := range []struct {
		conf, stubConf string
		want           []netip.AddrPort
	}{
		{plain, up, aps("10.0.0.2:53", "[2001:db8::53]:53")},
		{stub, up, aps("127.0.0.53:53", "192.0.2.53:53")},
		{stub, filepath.Join(dir, "absent"), aps("127.0.0.53:53")},
	} {
		got, err := HostResolvers(c.conf, c.stubConf)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("HostResolvers(%s, %s) = %v, %v; want %v", c.conf, c.stubConf, got, err, c.want)
		}
	}
	if _, err := HostResolvers(filepath.Join(dir, "absent"), up); err == nil {
		t.Error("a missing resolv.conf is not an error")
	}
	got, err := TrustedResolvers(aps("10.9.9.9:0", "[::ffff:10.9.9.8]:5353"))
	if err != nil || !slices.Equal(got, aps("10.9.9.9:53", "10.9.9.8:5353")) {
		t.Errorf("policy resolvers: %v %v", got, err)
	}
}
