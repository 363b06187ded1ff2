// Package names holds `exewall names`.
package names

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command lists the DNS name -> address bindings in force.
var Command = &cli.Command{
	Name:  "names",
	Usage: "show the DNS name -> address bindings in force, per rule, with expiry",
	Description: `Lists, for each rule with name entries (api.github.com, *.debian.org),
the addresses its programs received in answers from trusted resolvers, the
name asked (and the CNAME chain that led to the address), and when the
binding expires: the TTL of the answer, clamped to the floor and ceiling
that 'exewall status' shows. A connection to an address listed here is
judged by the rule's name entries; an expired binding is gone.`,
	Flags: []cli.Flag{commands.JSONFlag},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		bs, err := commands.Client(cliContext).Names(cliContext.Context)
		if err != nil {
			return err
		}
		w := cliContext.App.Writer
		if cliContext.Bool("json") {
			return commands.PrintJSON(w, bs)
		}
		return Print(w, bs, time.Now())
	},
}

// Print writes bs as a table, with each binding's time left as of now.
func Print(w io.Writer, bs []engine.NameBinding, now time.Time) error {
	if len(bs) == 0 {
		_, err := fmt.Fprintln(w, "no name bindings in force")
		return err
	}
	tw := commands.Table(w)
	fmt.Fprintln(tw, "RULE\tNAME\tADDRESS\tEXPIRES\tVIA")
	for _, b := range bs {
		via := make([]string, len(b.Via))
		for i, v := range b.Via {
			via[i] = commands.Q(v)
		}
		left := b.Expires.Sub(now).Truncate(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (in %s)\t%s\n", commands.Q(b.Rule), commands.Q(b.Name), b.Addr,
			b.Expires.Local().Format(time.TimeOnly), max(left, 0), strings.Join(via, " -> "))
	}
	return tw.Flush()
}
