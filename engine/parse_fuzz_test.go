package engine

import (
	"errors"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../examples/policy.yaml"); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"default: deny\nmode: audit\nrules: []\n",
		"rules:\n  - name: a\n    exe: /bin/a\n    action: deny\n    audit: true\n    allow: [10.0.0.0/8 port 1-2 tcp, '::ffff:1.2.3.4']\n",
		"rules:\n  - {name: '1', user: 1000, action: local-only, deny: [::/0 udp]}\n",
		"rules:\n  - name: c\n    cgroup: //a/./b\n    action: allow\n",
		"rules:\n  - name: w\n    exe: C:\\x.exe\n    action: deny\n---\n",
		"a: &x 1\nb: *x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error %v is %T, want *PolicyError", err, err)
			}
			return
		}
		roundTrip(t, p)
	})
}

func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "1.2.3.4 port 1-65535 udp", "::ffff:1.2.3.4/100 port 5 tcp", "2001:db8::/32", "fe80::1%eth0", "0.0.0.0/0 port 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDest(s)
		if err != nil {
			return
		}
		if err := checkDest(d); err != nil {
			t.Fatalf("ParseDest(%q) = %v, which checkDest refuses: %v", s, d, err)
		}
		again, err := ParseDest(d.String())
		if err != nil || again != d {
			t.Fatalf("ParseDest(%q) = %v; reparsed %v, %v", s, d, again, err)
		}
	})
}
