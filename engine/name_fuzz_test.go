package engine

import (
	"strings"
	"testing"
)

// FuzzParseName: any string is accepted or refused without panicking; what
// is accepted is canonical (parsing it again gives itself), within the
// length limits, and matches names as NameMatches says.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"api.github.com", "*.debian.org", "Bücher.example.", "a..b", "*.*.x", "_dmarc.x.org",
		"xn--bcher-kva.example", "1.2.3.4", "-a.b", strings.Repeat("a.", 130) + "com", "*", "*.", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseName(s)
		if err != nil {
			return
		}
		again, err := ParseName(name)
		if err != nil || again != name {
			t.Fatalf("ParseName(%q) = %q, which parses as %q, %v", s, name, again, err)
		}
		if len(name) > maxNameLen || name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
			t.Fatalf("ParseName(%q) = %q: not canonical", s, name)
		}
		if suffix, wild := strings.CutPrefix(name, "*."); wild {
			if NameMatches(name, suffix) || !NameMatches(name, "x."+strings.ToUpper(suffix)+".") {
				t.Fatalf("wildcard %q matches its apex or misses a name below it", name)
			}
		} else if !NameMatches(name, strings.ToUpper(name)+".") {
			t.Fatalf("%q does not match itself", name)
		}
	})
}
