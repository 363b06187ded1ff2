// Package diff holds `exewall diff FILE`: what `apply -f FILE` would change.
package diff

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command shows what applying a policy file would change.
var Command = &cli.Command{
	Name:      "diff",
	Usage:     "show what `apply -f FILE` would change",
	ArgsUsage: "FILE",
	Description: `Reads and validates FILE exactly as apply would (an invalid file is
refused with the line at fault), asks the daemon for the policy in force
and lists the differences: default and mode, rules added (+), removed (-)
and changed (~), with the fields that change. Nothing is changed. "-"
reads standard input. Exit status 0 whether or not there are differences.`,
	Flags: []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		args, err := commands.Args(cliContext, 1)
		if err != nil {
			return err
		}
		file := args[0]
		var data []byte
		if file == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		p, err := engine.Parse(data)
		if err == nil {
			err = engine.Validate(p, engine.StatResolver{})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		cur, err := commands.Client(cliContext).Policy(cliContext.Context)
		if err != nil {
			return err
		}
		ch := Compare(cur, engine.ViewPolicy(p))
		if cliContext.Bool("json") {
			return commands.PrintJSON(cliContext.App.Writer, ch)
		}
		Print(cliContext.App.Writer, ch, file)
		return nil
	},
}

// Changes is what applying a policy would change.
type Changes struct {
	Default *[2]string        `json:"default,omitempty"` // from, to
	Mode    *[2]string        `json:"mode,omitempty"`
	Added   []engine.RuleView `json:"added"`
	Removed []engine.RuleView `json:"removed"`
	Changed []RuleChange      `json:"changed"`
}

// RuleChange is a rule kept by name whose fields change.
type RuleChange struct {
	Name   string          `json:"name"`
	Fields []string        `json:"fields"` // "action: deny -> local-only", "allow: +1.2.3.4/32 port 443 tcp"
	From   engine.RuleView `json:"from"`
	To     engine.RuleView `json:"to"`
}

// None reports whether nothing would change.
func (c Changes) None() bool {
	return c.Default == nil && c.Mode == nil && len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// Compare lists what replacing cur with next changes. Rules are matched
// by name; the order of rules does not matter to the verdicts.
func Compare(cur, next engine.PolicyView) Changes {
	c := Changes{Added: []engine.RuleView{}, Removed: []engine.RuleView{}, Changed: []RuleChange{}}
	if cur.Default != next.Default {
		c.Default = &[2]string{cur.Default, next.Default}
	}
	if cur.Mode != next.Mode {
		c.Mode = &[2]string{cur.Mode, next.Mode}
	}
	old := map[string]engine.RuleView{}
	for _, r := range cur.Rules {
		old[r.Name] = r
	}
	seen := map[string]bool{}
	for _, r := range next.Rules {
		seen[r.Name] = true
		o, ok := old[r.Name]
		switch {
		case !ok:
			c.Added = append(c.Added, r)
		case !reflect.DeepEqual(o, r):
			c.Changed = append(c.Changed, RuleChange{Name: r.Name, Fields: fieldChanges(o, r), From: o, To: r})
		}
	}
	for _, r := range cur.Rules {
		if !seen[r.Name] {
			c.Removed = append(c.Removed, r)
		}
	}
	return c
}

func fieldChanges(a, b engine.RuleView) []string {
	var out []string
	scalar := func(name, x, y string) {
		if x != y {
			out = append(out, fmt.Sprintf("%s: %s -> %s", name, orNone(x), orNone(y)))
		}
	}
	scalar("selector", selector(a), selector(b))
	scalar("action", a.Action, b.Action)
	scalar("audit", fmt.Sprint(a.Audit), fmt.Sprint(b.Audit))
	list := func(name string, x, y []string) {
		var parts []string
		for _, s := range y {
			if !contains(x, s) {
				parts = append(parts, "+"+s)
			}
		}
		for _, s := range x {
			if !contains(y, s) {
				parts = append(parts, "-"+s)
			}
		}
		if len(parts) > 0 {
			out = append(out, name+": "+strings.Join(parts, ", "))
		}
	}
	list("allow", a.Allow, b.Allow)
	list("deny", a.Deny, b.Deny)
	if len(out) == 0 {
		out = append(out, "order of destinations")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func selector(r engine.RuleView) string {
	switch {
	case r.Exe != "":
		return "exe " + r.Exe
	case r.Cgroup != "":
		return "cgroup " + r.Cgroup
	case r.User != "":
		return "user " + r.User
	case r.Group != "":
		return "group " + r.Group
	}
	return ""
}

func describe(r engine.RuleView) string {
	s := fmt.Sprintf("%s %s", r.Action, selector(r))
	if len(r.Allow) > 0 {
		s += ", allow " + strings.Join(r.Allow, "; ")
	}
	if len(r.Deny) > 0 {
		s += ", deny " + strings.Join(r.Deny, "; ")
	}
	if r.Audit {
		s += " (audit)"
	}
	return s
}

// Print writes the changes for people.
func Print(w io.Writer, c Changes, file string) {
	if c.None() {
		fmt.Fprintf(w, "no changes: %s says what is in force\n", file)
		return
	}
	if c.Default != nil {
		fmt.Fprintf(w, "~ default: %s -> %s\n", c.Default[0], c.Default[1])
	}
	if c.Mode != nil {
		fmt.Fprintf(w, "~ mode: %s -> %s\n", c.Mode[0], c.Mode[1])
	}
	for _, r := range c.Removed {
		fmt.Fprintf(w, "- rule %s: %s\n", commands.Q(r.Name), commands.Q(describe(r)))
	}
	for _, r := range c.Added {
		fmt.Fprintf(w, "+ rule %s: %s\n", commands.Q(r.Name), commands.Q(describe(r)))
	}
	for _, r := range c.Changed {
		fmt.Fprintf(w, "~ rule %s: %s\n", commands.Q(r.Name), commands.Q(strings.Join(r.Fields, "; ")))
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed\n", len(c.Added), len(c.Removed), len(c.Changed))
}
