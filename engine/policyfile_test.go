package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

const commented = `# top comment
default: allow   # the default
# mode comment
mode: enforce
rules:
  # curl comment
  - name: curl
    exe: /usr/bin/curl   # curl line
    action: deny
  # backup comment
  - name: backup
    exe: /usr/bin/rclone
    action: deny
    allow:
      - 203.0.113.0/24 port 443 tcp   # the office
      - 2001:db8::/32 port 443
  - name: web
    cgroup: /system.slice/nginx.service
    action: local-only
`

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, s)
	}
	return p
}

func edit(t *testing.T, src string, p *Policy) string {
	t.Helper()
	out, lost, err := EditPolicyFile([]byte(src), p)
	if err != nil {
		t.Fatal(err)
	}
	if lost {
		t.Errorf("comments lost:\n%s", out)
	}
	back := mustParse(t, string(out))
	if !reflect.DeepEqual(ViewPolicy(back), ViewPolicy(p)) {
		t.Fatalf("edited file says %+v, want %+v", ViewPolicy(back), ViewPolicy(p))
	}
	return string(out)
}

func wantIn(t *testing.T, out string, subs ...string) {
	t.Helper()
	last := -1
	for _, s := range subs {
		i := strings.Index(out, s)
		if i < 0 {
			t.Fatalf("%q missing from:\n%s", s, out)
		}
		if i < last {
			t.Fatalf("%q out of order in:\n%s", s, out)
		}
		last = i
	}
}

func TestEditKeepsCommentsAndOrder(t *testing.T) {
	p := mustParse(t, commented)

	// Unchanged: byte for byte what the encoder makes of it, comments kept.
	out := edit(t, commented, p)
	wantIn(t, out, "# top comment", "# the default", "# mode comment", "# curl comment", "# curl line",
		"# backup comment", "# the office", "name: web")

	// Add a rule: appended, everything else kept.
	p2 := p.Clone()
	d, _ := ParseDest("10.0.0.0/8 port 22")
	p2.Rules = append(p2.Rules, Rule{Name: "ssh", Selector: Selector{Exe: "/usr/bin/ssh"}, Action: ActionDeny, Allow: []Dest{d}})
	out = edit(t, commented, p2)
	wantIn(t, out, "# top comment", "# curl comment", "# curl line", "# the office", "name: web", "name: ssh", "10.0.0.0/8 port 22")

	// Remove the middle rule: its comments go, the others stay in order.
	p3 := p2.Clone()
	p3.Rules = append(p3.Rules[:1], p3.Rules[2:]...)
	out = edit(t, out, p3)
	if strings.Contains(out, "backup") || strings.Contains(out, "the office") {
		t.Errorf("removed rule still there:\n%s", out)
	}
	wantIn(t, out, "# top comment", "# curl comment", "name: curl", "name: web", "name: ssh")

	// Default, mode and an action change in place.
	p4 := p3.Clone()
	p4.Default, p4.Mode = ActionLocalOnly, ModeAudit
	p4.Rules[0].Action = ActionAllow
	p4.Rules[0].Audit = true
	out = edit(t, out, p4)
	wantIn(t, out, "# top comment", "default: local-only", "# the default", "# mode comment", "mode: audit",
		"# curl comment", "name: curl", "exe: /usr/bin/curl", "# curl line", "action: allow", "audit: true", "name: web")

	// Every rule removed.
	p5 := p4.Clone()
	p5.Rules = nil
	out = edit(t, out, p5)
	wantIn(t, out, "# top comment", "rules: []")
}

func TestEditKeepsDestComments(t *testing.T) {
	p := mustParse(t, commented)
	extra, _ := ParseDest("198.51.100.0/24")
	p.Rules[1].Allow = append(p.Rules[1].Allow, extra)
	out := edit(t, commented, p)
	wantIn(t, out, "203.0.113.0/24 port 443 tcp", "# the office", "2001:db8::/32 port 443", "198.51.100.0/24")
}

func TestEditFreshFile(t *testing.T) {
	p := DefaultPolicy()
	p.Rules = []Rule{{Name: "curl", Selector: Selector{Exe: "/usr/bin/curl"}, Action: ActionDeny}}
	for _, src := range []string{"", "\n", "# only a comment\n"} {
		out := edit(t, src, p)
		wantIn(t, out, "name: curl")
	}
	// The embedded default parses to DefaultPolicy.
	if got := mustParse(t, string(DefaultPolicyFile)); !reflect.DeepEqual(ViewPolicy(got), ViewPolicy(DefaultPolicy())) {
		t.Errorf("DefaultPolicyFile = %+v", got)
	}
	out := edit(t, string(DefaultPolicyFile), p)
	wantIn(t, out, "# exewall policy", "default: allow", "name: curl")
}

func TestEditMinimalFile(t *testing.T) {
	src := "rules:\n"
	p := mustParse(t, src)
	p.Mode = ModeAudit
	p.Rules = append(p.Rules, Rule{Name: "x", Selector: Selector{User: "1000"}, Action: ActionDeny})
	out := edit(t, src, p)
	wantIn(t, out, "mode: audit", "rules:", "name: x", `user: "1000"`)
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(target, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi, err)
	}
	data, _ := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if string(data) != "new" || fi.Mode().Perm() != 0o640 {
		t.Errorf("target = %q mode %v", data, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := Writable(link); err != nil {
		t.Errorf("Writable: %v", err)
	}
}

// A new policy file is readable by root only; an existing one keeps the mode
// its owner gave it (issue 13 item 8).
func TestWriteFileAtomicNewFileIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := WriteFileAtomic(path, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new policy file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("existing file mode %v, want its own 0644 kept", fi.Mode().Perm())
	}
}
