// Package status holds `exewall status`.
package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command shows what the daemon enforces and what it has counted.
var Command = &cli.Command{
	Name:  "status",
	Usage: "show the backend, attach point, policy, kernel counters and hooks",
	Flags: []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		st, err := commands.Client(cliContext).Status(cliContext.Context)
		if err != nil {
			return err
		}
		w := cliContext.App.Writer
		if cliContext.Bool("json") {
			return commands.PrintJSON(w, st)
		}
		tw := commands.Table(w)
		fmt.Fprintf(tw, "backend:\t%s\n", st.Backend)
		fmt.Fprintf(tw, "attached to:\t%s\n", st.AttachPoint)
		fmt.Fprintf(tw, "hooks:\t%s\n", strings.Join(st.Hooks, ", "))
		owner := "edited by exewall"
		if st.Managed {
			owner = "managed: not writable, CLI edits refused"
		}
		fmt.Fprintf(tw, "policy:\t%s (%s)\n", commands.Q(st.PolicyFile), owner)
		inbound := ""
		if st.DefaultInbound != "" && st.DefaultInbound != "allow" {
			inbound = ", default_inbound " + st.DefaultInbound
		}
		fmt.Fprintf(tw, "rules:\t%d, default %s%s, mode %s\n", st.Rules, st.Default, inbound, st.Mode)
		if st.ConfirmDeadline != nil {
			fmt.Fprintf(tw, "pending:\tapply rolls back at %s unless confirmed\n", st.ConfirmDeadline.Local().Format(time.TimeOnly))
		}
		fmt.Fprintf(tw, "counters:\tallowed %d, denied %d, audited %d\n", st.Counters.Allowed, st.Counters.Denied, st.Counters.Audited)
		fmt.Fprintf(tw, "events lost:\t%d\n", st.EventsLost)
		if st.PolicyFileError != "" {
			fmt.Fprintf(tw, "policy file:\tNOT IN FORCE: %s (the last good policy is enforced)\n", st.PolicyFileError)
		}
		if st.ViolationsLogLost > 0 || st.ViolationsLogError != "" {
			fmt.Fprintf(tw, "violations log:\t%d lines lost %s\n", st.ViolationsLogLost, st.ViolationsLogError)
		}
		if st.ViolationsFlooding > 0 {
			fmt.Fprintf(tw, "violations:\t%d programs flooding: their events are folded into summaries (%d folded so far)\n", st.ViolationsFlooding, st.ViolationsFolded)
		}
		if st.HeldSocketSweepError != "" {
			fmt.Fprintf(tw, "held sockets:\tNOT ALL RE-JUDGED: %s (connections the policy denies may still be open; `exewall sync` retries)\n", commands.Q(st.HeldSocketSweepError))
		}
		if n := st.Names; n != nil {
			fmt.Fprintf(tw, "dns names:\tbindings last their TTL clamped to %s..%s; %d in force; queries %d, answers %d, bindings %d, evictions %d, failures %d\n",
				secs(n.TTLFloorSeconds), secs(n.TTLCeilingSeconds), n.InForce, n.Queries, n.Answers, n.Bindings, n.Evictions, n.Failures)
		}
		if c := st.LastListenersCut; c != nil {
			fmt.Fprintf(tw, "listeners cut:\t%d so far; last at %s (%s): %s\n", st.ListenersCut,
				c.Time.Local().Format(time.DateTime), c.Why, commands.Q((&engine.CutError{Cuts: c.Cuts}).Error()))
		}
		fmt.Fprintf(tw, "uptime:\t%s\n", time.Duration(st.UptimeSeconds)*time.Second)
		tw.Flush()
		if len(st.RuleCounter) == 0 {
			return nil
		}
		names := make([]string, 0, len(st.RuleCounter))
		for n := range st.RuleCounter {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintln(w)
		tw = commands.Table(w)
		fmt.Fprintln(tw, "RULE\tALLOWED\tDENIED\tAUDITED")
		for _, n := range names {
			c := st.RuleCounter[n]
			label := n
			if label == "" {
				label = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", commands.Q(label), c.Allowed, c.Denied, c.Audited)
		}
		return tw.Flush()
	},
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
