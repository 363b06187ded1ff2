package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func pack(t testing.TB, m dnsmessage.Message) []byte {
	t.Helper()
	m.Response = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAnswer(t *testing.T) {
	q := []dnsmessage.Question{{Name: dnsmessage.MustNewName("WWW.Example.COM."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}
	msg := pack(t, dnsmessage.Message{Header: dnsmessage.Header{ID: 42}, Questions: q, Answers: []dnsmessage.Resource{
		cname("www.example.com.", 100, "Www.CDN.test."),
		cname("www.cdn.test.", 50, "e1.cdn.test."),
		a("E1.cdn.test.", 80, "192.0.2.1"),
		a("www.example.com.", 30, "192.0.2.2"),        // on the chain's first name
		a("evil.test.", 80, "192.0.2.3"),              // off the chain
		cname("e1.cdn.test.", 10, "www.example.com."), // a loop back to the start
	}})
	got, err := ParseAnswer(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 42 || got.Question != "www.example.com" || got.Type != dnsmessage.TypeA {
		t.Errorf("header %+v", got)
	}
	want := []Record{
		{Names: []string{"www.example.com", "www.cdn.test", "e1.cdn.test"}, Addr: netip.MustParseAddr("192.0.2.1"), TTL: 50},
		{Names: []string{"www.example.com"}, Addr: netip.MustParseAddr("192.0.2.2"), TTL: 30},
	}
	if len(got.Records) != len(want) {
		t.Fatalf("records %+v", got.Records)
	}
	for i := range want {
		if !slices.Equal(got.Records[i].Names, want[i].Names) || got.Records[i].Addr != want[i].Addr || got.Records[i].TTL != want[i].TTL {
			t.Errorf("record %d: %+v, want %+v", i, got.Records[i], want[i])
		}
	}
	// NXDOMAIN: no records; a query is not an answer.
	nx := pack(t, dnsmessage.Message{Header: dnsmessage.Header{RCode: dnsmessage.RCodeNameError}, Questions: q})
	if got, err := ParseAnswer(nx); err != nil || len(got.Records) != 0 || got.RCode != dnsmessage.RCodeNameError {
		t.Errorf("nxdomain: %+v %v", got, err)
	}
	qm := dnsmessage.Message{Questions: q}
	qb, _ := qm.Pack()
	if _, err := ParseAnswer(qb); err == nil {
		t.Error("a query parsed as an answer")
	}
}

func TestServfail(t *testing.T) {
	h, q, err := queryInfo(query(t, 77, "x.test.", dnsmessage.TypeAAAA))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAnswer(servfail(h, q))
	if err != nil || got.ID != 77 || got.RCode != dnsmessage.RCodeServerFailure || got.Question != "x.test" {
		t.Errorf("%+v %v", got, err)
	}
}

// FuzzParseAnswer: any bytes parse or fail without panicking, and what
// parses is bounded and canonical.
func FuzzParseAnswer(f *testing.F) {
	q := []dnsmessage.Question{{Name: dnsmessage.MustNewName("a.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}
	f.Add(pack(f, dnsmessage.Message{Questions: q, Answers: []dnsmessage.Resource{cname("a.test.", 5, "b.test."), a("b.test.", 9, "192.0.2.1"), a("a.test.", 9, "2001:db8::1")}}))
	f.Add(pack(f, dnsmessage.Message{Header: dnsmessage.Header{Truncated: true}, Questions: q}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, err := ParseAnswer(msg)
		if err != nil {
			return
		}
		if len(a.Records) > maxAddrs {
			t.Fatalf("%d records", len(a.Records))
		}
		for _, r := range a.Records {
			if len(r.Names) == 0 || len(r.Names) > maxChain || r.Names[0] != a.Question || !r.Addr.IsValid() || r.Addr.Is4In6() {
				t.Fatalf("record %+v for %q", r, a.Question)
			}
		}
	})
}
