package diff

import (
	"bytes"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

func TestCompare(t *testing.T) {
	cur := engine.PolicyView{Default: "allow", Mode: "enforce", Rules: []engine.RuleView{
		{Name: "curl", Exe: "/usr/bin/curl", Action: "deny"},
		{Name: "wget", Exe: "/usr/bin/wget", Action: "local-only"},
		{Name: "same", User: "nobody", Action: "deny"},
	}}
	next := engine.PolicyView{Default: "deny", Mode: "enforce", Rules: []engine.RuleView{
		{Name: "same", User: "nobody", Action: "deny"},
		{Name: "curl", Exe: "/usr/bin/curl", Action: "deny", Allow: []string{"10.0.0.0/8 port 443 tcp"}},
		{Name: "rclone", Exe: "/usr/bin/rclone", Action: "local-only"},
	}}
	c := engine.Compare(cur, next)
	var b bytes.Buffer
	Print(&b, c, "f.yaml")
	want := `~ default: allow -> deny
- rule wget: local-only exe /usr/bin/wget
+ rule rclone: local-only exe /usr/bin/rclone
~ rule curl: allow: +10.0.0.0/8 port 443 tcp
1 added, 1 removed, 1 changed
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	Print(&b, engine.Compare(cur, cur), "f.yaml")
	if !strings.HasPrefix(b.String(), "no changes") {
		t.Fatal(b.String())
	}
}
