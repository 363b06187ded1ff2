// Package rules holds the commands that change and list rules: deny,
// allow, local-only, rule add, rm, ls, default and mode.
package rules

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
)

var nameFlag = &cli.StringFlag{Name: "name", Usage: "the rule's name (default: derived from what it selects)"}
var auditFlag = &cli.BoolFlag{Name: "audit", Usage: "report what the rule would block, block nothing"}

// Commands are deny, allow and local-only: one rule for one executable.
var Commands = []*cli.Command{
	exeCommand("deny", "no network at all for EXE (loopback included)"),
	exeCommand("allow", "all networks for EXE (useful with default deny or local-only)"),
	exeCommand("local-only", "only loopback, private and link-local networks and this host's subnets for EXE"),
}

func exeCommand(action, usage string) *cli.Command {
	return &cli.Command{
		Name:      action,
		Usage:     usage,
		ArgsUsage: "EXE",
		Description: fmt.Sprintf(`Sets the action of the rule for one executable to %s, creating the
rule if there is none. EXE is a path (symlinks and hard links name the same
file) or a command name looked up in $PATH. Every process running that file
is covered.

What the command does not name is kept from the rule EXE had: its name,
its audit flag (unless --audit or --audit=false is given) and its allow and
deny entries; the output says what was kept and what the action was.

Example: exewall %s --audit /usr/bin/curl`, action, action),
		Flags: []cli.Flag{nameFlag, auditFlag, commands.ForceFlag},
		Action: func(cliContext *cli.Context) error {
			args, err := commands.Args(cliContext, 1)
			if err != nil {
				return err
			}
			exe, err := absExe(args[0])
			if err != nil {
				return err
			}
			rv := engine.RuleView{Name: cliContext.String("name"), Exe: exe, Action: action, Audit: cliContext.Bool("audit")}
			cur, err := commands.Client(cliContext).PolicyFor(cliContext.Context, exe)
			if err != nil {
				return err
			}
			prev := ruleForExe(cur, exe)
			if prev == nil {
				return addRule(cliContext, rv)
			}
			keptAudit := !cliContext.IsSet("audit") && prev.Audit
			if keptAudit {
				rv.Audit = true
			}
			rv.Allow, rv.Deny = prev.Allow, prev.Deny
			got, err := commands.ChangeClient(cliContext).AddRule(cliContext.Context, rv)
			if err != nil {
				return err
			}
			fmt.Fprintf(cliContext.App.Writer, "rule %s: %s\n", commands.Q(got.Name), commands.Q(describeKept(*prev, got, keptAudit)))
			noteExe(cliContext, got)
			return nil
		},
	}
}

// ruleForExe returns the rule whose exe is path, if any.
func ruleForExe(p engine.PolicyView, exe string) *engine.RuleView {
	for i, r := range p.Rules {
		if r.Exe != "" && engine.SameExe(r.Exe, exe) {
			return &p.Rules[i]
		}
	}
	return nil
}

// describeKept describes a rule that replaced prev, saying what was kept
// from it and what the action was before.
func describeKept(prev, got engine.RuleView, keptAudit bool) string {
	s := got.Action + " " + got.Selector().String()
	if len(got.Allow) > 0 {
		s += ", allow " + strings.Join(got.Allow, "; ")
	}
	if len(got.Deny) > 0 {
		s += ", deny " + strings.Join(got.Deny, "; ")
	}
	if len(got.Allow)+len(got.Deny) > 0 {
		s += " (entries kept)"
	}
	switch {
	case keptAudit:
		s += " (audit kept)"
	case got.Audit:
		s += " (audit)"
	case prev.Audit:
		s += " (audit off)"
	}
	if prev.Action == got.Action {
		return s + "; action unchanged"
	}
	return s + "; was " + prev.Action
}

// absExe makes a path absolute and finds a bare command name in $PATH, as
// the shell would run it.
func absExe(s string) (string, error) {
	if !strings.ContainsAny(s, `/\`) {
		p, err := exec.LookPath(s)
		if err != nil {
			return "", fmt.Errorf("%s: not found in $PATH; give the executable's path", s)
		}
		s = p
	}
	if filepath.IsAbs(s) || strings.HasPrefix(s, "/") {
		return s, nil
	}
	return filepath.Abs(s)
}

func addRule(cliContext *cli.Context, rv engine.RuleView) error {
	got, err := commands.ChangeClient(cliContext).AddRule(cliContext.Context, rv)
	if err != nil {
		return err
	}
	fmt.Fprintf(cliContext.App.Writer, "rule %s: %s\n", commands.Q(got.Name), commands.Q(got.String()))
	warnNotPresent(cliContext, got.Exe)
	noteExe(cliContext, got)
	return nil
}

// noteExe says what an exe: rule enforces where the OS enforces less than
// it says (macOS: incoming connections only).
func noteExe(cliContext *cli.Context, r engine.RuleView) {
	if r.Exe != "" && platform.ExeRuleNote != "" {
		fmt.Fprintf(cliContext.App.Writer, "note: rule %s: %s\n", commands.Q(r.Name), platform.ExeRuleNote)
	}
}

// RuleCommand is `rule add`: a rule with every option.
var RuleCommand = &cli.Command{
	Name:  "rule",
	Usage: "add or replace a rule with destination exceptions",
	Subcommands: []*cli.Command{{
		Name:      "add",
		Usage:     "add a rule, or replace the rule selecting the same processes",
		ArgsUsage: " ",
		Description: `Selects processes by exactly one of --exe, --cgroup, --user or --group.
--action decides what the rule does; --allow and --deny add exceptions, each
"CIDR [port N|N-M] [tcp|udp] [in|out]", repeatable; the most specific prefix
wins. The rule also governs what the processes accept: a peer's address is
judged like a destination, an entry's port is the local port; "in" or "out"
limits an entry to one direction.

Example:
  exewall rule add --name backup --action deny \
      --allow "203.0.113.0/24 port 443 tcp" --exe /usr/bin/rclone`,
		Flags: []cli.Flag{
			nameFlag, auditFlag, commands.ForceFlag,
			&cli.StringFlag{Name: "action", Usage: "allow, deny or local-only"},
			&cli.StringSliceFlag{Name: "allow", Usage: "a destination to allow (repeatable)"},
			&cli.StringSliceFlag{Name: "deny", Usage: "a destination to deny (repeatable)"},
			&cli.StringFlag{Name: "exe", Usage: "select processes running this executable"},
			&cli.StringFlag{Name: "cgroup", Usage: "select processes in this cgroup v2 path and below (Linux)"},
			&cli.StringFlag{Name: "user", Usage: "select processes of this user (name or uid)"},
			&cli.StringFlag{Name: "group", Usage: "select processes of this group (name or gid)"},
		},
		Action: func(cliContext *cli.Context) error {
			if _, err := commands.Args(cliContext, 0); err != nil {
				return err
			}
			if cliContext.String("action") == "" {
				return commands.Usagef("--action is required (allow, deny or local-only)")
			}
			set := 0
			for _, f := range []string{"exe", "cgroup", "user", "group"} {
				if cliContext.String(f) != "" {
					set++
				}
			}
			if set != 1 {
				return commands.Usagef("give exactly one of --exe, --cgroup, --user or --group")
			}
			rv := engine.RuleView{Name: cliContext.String("name"), Action: cliContext.String("action"),
				Audit: cliContext.Bool("audit"), Allow: cliContext.StringSlice("allow"), Deny: cliContext.StringSlice("deny"),
				Cgroup: cliContext.String("cgroup"), User: cliContext.String("user"), Group: cliContext.String("group")}
			if e := cliContext.String("exe"); e != "" {
				exe, err := absExe(e)
				if err != nil {
					return err
				}
				rv.Exe = exe
			}
			// Check destinations here too, so a typo is named precisely.
			for _, d := range append(append([]string(nil), rv.Allow...), rv.Deny...) {
				if _, err := engine.ParseDest(d); err != nil {
					return err
				}
			}
			return addRule(cliContext, rv)
		},
	}},
}

// RmCommand removes a rule.
var RmCommand = &cli.Command{
	Name:      "rm",
	Usage:     "remove a rule, by name or by the executable it names",
	ArgsUsage: "NAME|EXE",
	Flags:     []cli.Flag{commands.ForceFlag},
	Action: func(cliContext *cli.Context) error {
		args, err := commands.Args(cliContext, 1)
		if err != nil {
			return err
		}
		got, err := commands.ChangeClient(cliContext).RemoveRule(cliContext.Context, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(cliContext.App.Writer, "removed rule %s (%s)\n", commands.Q(got.Name), commands.Q(got.String()))
		return nil
	},
}

// LsCommand lists the rules.
var LsCommand = &cli.Command{
	Name:    "ls",
	Aliases: []string{"list"},
	Usage:   "list the rules in force",
	Flags:   []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		p, err := commands.Client(cliContext).Policy(cliContext.Context)
		if err != nil {
			return err
		}
		w := cliContext.App.Writer
		if cliContext.Bool("json") {
			return commands.PrintJSON(w, p.Rules)
		}
		if p.DefaultInbound != "" {
			fmt.Fprintf(w, "default: %s, default_inbound: %s, mode: %s\n", p.Default, p.DefaultInbound, p.Mode)
		} else {
			fmt.Fprintf(w, "default: %s, mode: %s\n", p.Default, p.Mode)
		}
		if len(p.Rules) == 0 {
			fmt.Fprintln(w, "no rules")
			return nil
		}
		tw := commands.Table(w)
		fmt.Fprintln(tw, "NAME\tACTION\tSELECTS\tALLOW\tDENY\tAUDIT")
		for _, r := range p.Rules {
			sel := r.Selector().String()
			if notPresent(r.Exe) {
				sel += " (not present yet)"
			}
			if r.Exe != "" && platform.ExeRuleNote != "" {
				sel += " (inbound only)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", commands.Q(r.Name), r.Action, commands.Q(sel), commands.Q(orDash(r.Allow)), commands.Q(orDash(r.Deny)), r.Audit)
		}
		return tw.Flush()
	},
}

func orDash(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, "; ")
}

// DefaultCommand sets the verdict for processes no rule selects.
var DefaultCommand = &cli.Command{
	Name:      "default",
	Usage:     "set the verdict for executables no rule names",
	ArgsUsage: "allow|deny|local-only",
	Description: `Without --inbound, sets what programs no rule names may open (default:).
With --inbound, sets what they may accept (default_inbound:), which is
allow until set: "default deny" alone keeps every server reachable.`,
	Flags: []cli.Flag{commands.ForceFlag,
		&cli.BoolFlag{Name: "inbound", Usage: "set default_inbound: what programs no rule names accept"}},
	Action: func(cliContext *cli.Context) error {
		args, err := commands.Args(cliContext, 1)
		if err != nil {
			return err
		}
		if _, err := engine.ParseAction(args[0]); err != nil {
			return commands.Usagef("%v", err)
		}
		c := commands.ChangeClient(cliContext)
		set, key := c.SetDefault, "default"
		if cliContext.Bool("inbound") {
			set, key = c.SetDefaultInbound, "default_inbound"
		}
		if err := set(cliContext.Context, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cliContext.App.Writer, "%s: %s\n", key, args[0])
		return nil
	},
}

// ModeCommand switches between enforcing and auditing.
var ModeCommand = &cli.Command{
	Name:      "mode",
	Usage:     "enforce the policy, or only audit (report what it would block)",
	ArgsUsage: "enforce|audit",
	Flags:     []cli.Flag{commands.ForceFlag},
	Action: func(cliContext *cli.Context) error {
		args, err := commands.Args(cliContext, 1)
		if err != nil {
			return err
		}
		if _, err := engine.ParseMode(args[0]); err != nil {
			return commands.Usagef("%v", err)
		}
		if err := commands.ChangeClient(cliContext).SetMode(cliContext.Context, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cliContext.App.Writer, "mode: %s\n", args[0])
		return nil
	},
}
