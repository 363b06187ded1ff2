// Package learn holds `exewall learn`: watch what programs do, then write
// a policy from it.
package learn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

// Command runs a learning session and writes the policy it learned.
var Command = &cli.Command{
	Name:      "learn",
	Usage:     "audit everything for a while, then write a policy from what was seen",
	ArgsUsage: " ",
	Description: `Puts a policy in force that blocks nothing and reports every connection
attempt of every process (no rules, default deny, mode audit), for
--duration or until Ctrl-C, then puts the previous policy back exactly and
writes a policy to --out (default: standard output): one rule per
executable seen, "deny" with the destinations it reached allowed (folded
into prefixes and port lists), or "local-only" when it only talked to local
networks, each with comments saying what was seen and how often. Where
the program looked the address up in DNS (and exewall's forwarder saw the
answer), the entry is the name (api.github.com port 443 tcp), not the
address; --fold-names folds names below one domain into *.DOMAIN. The
previous policy's default, mode and rules are kept.

The policy file is not touched during learning, and the daemon ends the
session by itself when the duration is up, when this command dies (it
stops renewing its lease), or when the daemon stops. Review the result with
"exewall diff FILE", then "exewall apply -f FILE".`,
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "duration", Usage: "how long to learn (e.g. 10m); 0: until Ctrl-C"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the learned policy to this file (default: standard output)"},
		&cli.BoolFlag{Name: "fold-names", Usage: "fold names looked up below one domain (a.example.com, b.example.com) into *.example.com"},
	},
	Action: func(cliContext *cli.Context) error {
		if _, err := commands.Args(cliContext, 0); err != nil {
			return err
		}
		d := cliContext.Duration("duration")
		if d < 0 {
			return commands.Usagef("--duration must not be negative")
		}
		out := cliContext.String("out")
		if out != "" {
			// Fail before learning, not after, when the file cannot be written.
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			f.Close()
		}
		c := commands.Client(cliContext)
		rep, err := learn(cliContext.Context, c, d, cliContext.App.ErrWriter)
		if err != nil {
			return err
		}
		data := []byte(rep.Policy)
		if cliContext.Bool("fold-names") {
			if data, _, err = engine.LearnedPolicy(rep, engine.LearnOptions{HostNets: rep.HostNets, SameFile: sameFile,
				Ended: time.Now(), FoldNames: true}); err != nil {
				return err
			}
		}
		p, err := engine.Parse(data)
		if err != nil {
			return fmt.Errorf("the daemon's learned policy: %w", err)
		}
		if out == "" {
			_, err = cliContext.App.Writer.Write(data)
			return err
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(cliContext.App.ErrWriter, "wrote %s: %d rules from %d attempts by %d executables; review it with `exewall diff %s`\n",
			out, len(p.Rules), rep.Events, rep.Exes, out)
		return nil
	},
}

// learn runs the session until d is up or the user interrupts it, showing
// progress on errOut when it is a terminal, and returns the final report.
func learn(ctx context.Context, c *client.Client, d time.Duration, errOut io.Writer) (engine.LearnReport, error) {
	sig, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The daemon ends the session by itself at d, or when we stop polling
	// (we died); its report stays until we collect it.
	rep, err := c.StartLearning(ctx, d, client.DefaultLearnLease)
	if err != nil {
		var re *client.Error
		if errors.As(err, &re) {
			return rep, fmt.Errorf("cannot start learning: %s", re.Message)
		}
		return rep, err
	}
	tty := isTerminal(errOut)
	started := time.Now()
	progress := func(r engine.LearnReport) {
		if !tty {
			return
		}
		of := ""
		if d > 0 {
			of = " of " + d.String()
		}
		fmt.Fprintf(errOut, "\rlearning: %d events, %d executables, %s elapsed%s; Ctrl-C to stop and write the policy\x1b[K",
			r.Events, r.Exes, time.Since(started).Round(time.Second), of)
	}
	progress(rep)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var end <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		end = t.C
	}
loop:
	for {
		select {
		case <-sig.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
			r, err := c.LearnStatus(ctx)
			if err != nil {
				// The stop below says what happened (or fails too).
				break loop
			}
			progress(r)
			if !r.Active {
				break loop
			}
		}
	}
	if tty {
		fmt.Fprint(errOut, "\r\x1b[K")
	}
	// Not the interrupted context: the session must be stopped and read.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	final, err := c.StopLearning(sctx)
	if err != nil {
		return final, fmt.Errorf("stop learning: %w", err)
	}
	if final.EndReason != "" && final.EndReason != "stopped by the client" && final.EndReason != "the duration is up" {
		fmt.Fprintf(errOut, "exewall: learning ended early: %s\n", final.EndReason)
	}
	return final, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// sameFile reports whether two paths name one file (hard links, symlinks).
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
