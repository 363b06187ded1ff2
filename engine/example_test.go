package engine_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

func ExampleParse() {
	p, err := engine.Parse([]byte(`
default: allow
rules:
  - name: backup
    exe: /usr/bin/rclone
    action: deny
    allow:
      - 203.0.113.0/24 port 443 tcp
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r := p.Rules[0]
	fmt.Println(p.Default, p.Mode, len(p.Rules))
	fmt.Println(r.Name, r.Selector, r.Action, r.Allow[0])

	_, err = engine.Parse([]byte("default: maybe\n"))
	fmt.Println(err)
	// Output:
	// allow enforce 1
	// backup exe /usr/bin/rclone deny 203.0.113.0/24 port 443 tcp
	// line 1: default: unknown action "maybe" (want allow, deny or local-only)
}

// pathResolver knows executables by path, for examples and tests that need
// no file system.
type pathResolver map[string]uint64

func (r pathResolver) Identify(path string) (engine.FileID, bool, error) {
	ino, ok := r[path]
	return engine.FileID{Ino: ino}, ok, nil
}

func ExampleEvaluator() {
	p, _ := engine.Parse([]byte(`
default: allow
rules:
  - name: curl
    exe: /usr/bin/curl
    action: local-only
`))
	files := pathResolver{"/usr/bin/curl": 1, "/usr/bin/wget": 2}
	e, err := engine.NewEvaluator(p, files, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	curl := engine.Subject{Exe: engine.FileID{Ino: 1}, HasExe: true}
	wget := engine.Subject{Exe: engine.FileID{Ino: 2}, HasExe: true}
	for _, c := range []struct {
		who  string
		s    engine.Subject
		addr string
	}{{"curl", curl, "192.168.1.10"}, {"curl", curl, "198.51.100.7"}, {"wget", wget, "198.51.100.7"}} {
		d := e.Evaluate(c.s, netip.MustParseAddr(c.addr), 443, engine.ProtoTCP)
		fmt.Printf("%s -> %s: %s (rule %q)\n", c.who, c.addr, d.Verdict, d.Rule)
	}
	// Output:
	// curl -> 192.168.1.10: allow (rule "curl")
	// curl -> 198.51.100.7: deny (rule "curl")
	// wget -> 198.51.100.7: allow (rule "")
}

// A Manager with no policy file keeps its policy in memory: a program can
// embed the engine with any Backend, here the in-memory one.
func ExampleManager() {
	ctx := context.Background()
	b := enginetest.New(16)
	m := engine.NewManager(engine.ManagerConfig{Backend: b, Resolver: pathResolver{"/usr/bin/curl": 1}})
	defer m.Close()
	if err := m.Load(ctx); err != nil {
		fmt.Println(err)
		return
	}
	r, err := m.AddRule(ctx, engine.Rule{Selector: engine.Selector{Exe: "/usr/bin/curl"}, Action: engine.ActionDeny})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("added %s: %s\n", r.Name, engine.ViewRule(r))
	fmt.Println("in force:", len(b.InForce().Rules), "rule(s)")

	if _, err := m.RemoveRule(ctx, "curl"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("in force:", len(b.InForce().Rules), "rule(s)")
	// Output:
	// added curl: deny exe /usr/bin/curl
	// in force: 1 rule(s)
	// in force: 0 rule(s)
}
