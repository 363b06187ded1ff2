package names

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

func TestPrint(t *testing.T) {
	now := time.Now()
	var buf bytes.Buffer
	err := Print(&buf, []engine.NameBinding{
		{Rule: "gh", Name: "api.github.com", Addr: netip.MustParseAddr("192.0.2.1"), Expires: now.Add(90 * time.Second)},
		{Rule: "x\x1b[2J", Name: "a.test", Via: []string{"b.cdn.test"}, Addr: netip.MustParseAddr("2001:db8::1"), Expires: now.Add(-time.Second)},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"RULE", "api.github.com", "192.0.2.1", "(in 1m30s)", `x\x1b[2J`, "b.cdn.test", "(in 0s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("an escape sequence reached the terminal")
	}
	buf.Reset()
	Print(&buf, nil, now)
	if !strings.Contains(buf.String(), "no name bindings") {
		t.Errorf("empty: %q", buf.String())
	}
}
