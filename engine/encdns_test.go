package engine

import (
	"net/netip"
	"testing"
)

// TestEncryptedDNSDenied: a rule with a name entry denies DoT/DoQ (port
// 853, TCP and UDP, IPv4 and IPv6) and the well-known DoH endpoints (by
// address, and by name once looked up) even under a broad allow; a rule
// without names is untouched; an explicit allow opts out.
func TestEncryptedDNSDenied(t *testing.T) {
	p, err := Parse([]byte(`default: allow
rules:
  - name: names
    user: "1001"
    action: allow
    allow: [api.github.com port 443 tcp, 0.0.0.0/0, '::/0']
  - name: plain
    user: "1002"
    action: allow
    allow: [0.0.0.0/0]
  - name: optout
    user: "1003"
    action: deny
    allow: [api.github.com, 0.0.0.0/0 port 853, 8.8.8.8/32 port 443, dns.google port 443]
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvaluator(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Bind("names", "dns.google", netip.MustParseAddr("203.0.113.53"))
	e.Bind("optout", "dns.google", netip.MustParseAddr("203.0.113.53"))
	out := func(uid uint32, addr string, port uint16, proto Proto) Verdict {
		return e.Judge(Subject{UID: uid}, Attempt{Dir: DirOut, Addr: netip.MustParseAddr(addr), Port: port, Proto: proto}).Verdict
	}
	for _, c := range []struct {
		uid   uint32
		addr  string
		port  uint16
		proto Proto
		want  Verdict
	}{
		{1001, "192.0.2.1", 853, ProtoTCP, VerdictDeny},
		{1001, "192.0.2.1", 853, ProtoUDP, VerdictDeny},
		{1001, "2001:db8::1", 853, ProtoTCP, VerdictDeny},
		{1001, "1.1.1.1", 443, ProtoTCP, VerdictDeny},
		{1001, "2606:4700:4700::1111", 443, ProtoUDP, VerdictDeny},
		{1001, "203.0.113.53", 443, ProtoTCP, VerdictDeny}, // dns.google, looked up
		{1001, "1.1.1.1", 53, ProtoUDP, VerdictAllow},      // plain DNS goes through the forwarder
		{1001, "192.0.2.1", 443, ProtoTCP, VerdictAllow},
		{1002, "192.0.2.1", 853, ProtoTCP, VerdictAllow}, // no names: untouched
		{1002, "1.1.1.1", 443, ProtoTCP, VerdictAllow},
		{1003, "192.0.2.1", 853, ProtoUDP, VerdictAllow}, // opted out
		{1003, "8.8.8.8", 443, ProtoTCP, VerdictAllow},
		{1003, "203.0.113.53", 443, ProtoTCP, VerdictAllow},
		{1003, "::1", 853, ProtoTCP, VerdictDeny}, // ::/0 port 853 not opted out (and action deny)
		{1003, "1.1.1.1", 443, ProtoTCP, VerdictDeny},
	} {
		if got := out(c.uid, c.addr, c.port, c.proto); got != c.want {
			t.Errorf("uid %d to %s:%d %s: %s, want %s", c.uid, c.addr, c.port, c.proto, got, c.want)
		}
	}
	if WithEncryptedDNSDenied(p).Rules[1].Deny != nil {
		t.Error("a rule without names got denies")
	}
	if len(p.Rules[0].Deny) != 0 {
		t.Error("the policy itself was changed")
	}
	for _, d := range EncryptedDNSDenies() {
		if d.IsName() {
			if _, err := ParseName(d.Name); err != nil {
				t.Errorf("DoH name %q: %v", d.Name, err)
			}
		}
	}
}
