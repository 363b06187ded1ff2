// Command bench measures exewall against no firewall, nftables, iptables and
// (optionally) OpenSnitch on this machine: connect-path cost per rule count,
// policy apply times, the violation pipeline under a storm, and the daemon's
// footprint. It prints a Markdown table with PASS/FAIL per performance target
// and writes a JSON file and an SVG plot.
//
//	sudo make bench                # full run (several minutes)
//	sudo make bench-quick          # CI smoke run, under two minutes
//	sudo make bench ARGS="--only connect"
//
// Linux only, as root: it attaches eBPF programs to scratch cgroups it
// creates, loads an nftables table and an iptables chain of its own, and
// removes all of it at the end, on error and on SIGINT/SIGTERM.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

// options are the command line.
type options struct {
	quick          bool
	rounds         int
	budget         time.Duration // per (engine, operation, round)
	withOpenSnitch bool
	jsonPath       string
	svgPath        string
	exewallBin     string // prebuilt exewall binary; "" = go build ./cmd/exewall
	only           string // comma-separated sections to run
	engines        string // comma-separated connect-path engines to run; "" = all
	seed           int64
	failOnTarget   bool
	fromJSON       string // re-render a saved run instead of measuring
	args           []string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "CI mode: fewer rounds and rules, under two minutes")
	fs.IntVar(&o.rounds, "rounds", 0, "interleaved rounds of the connect-path measurements (default 9, quick 3)")
	fs.DurationVar(&o.budget, "budget", 0, "time per engine, operation and round (default 300ms, quick 60ms)")
	fs.BoolVar(&o.withOpenSnitch, "with-opensnitch", false, "also measure OpenSnitch (Debian package opensnitch; installed if missing)")
	fs.StringVar(&o.jsonPath, "json", "exewall-bench.json", "write the results as JSON to this file")
	fs.StringVar(&o.svgPath, "svg", "exewall-bench.svg", "write the cost-per-connect plot to this file")
	fs.StringVar(&o.exewallBin, "exewall", "", "exewall binary for the daemon and CLI figures (default: build ./cmd/exewall)")
	fs.StringVar(&o.only, "only", "connect,blocks,apply,scale,storm,footprint", "sections to run (also: guard, dns, inbound, start)")
	fs.StringVar(&o.engines, "engines", "", "connect-path engines to measure, comma-separated (none, bpf-empty, exewall, exewall-allow-all, nftables, iptables; default all)")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the per-round engine order (default: time)")
	fs.BoolVar(&o.failOnTarget, "fail-on-target", false, "exit 1 when a target is missed (default: only harness errors exit 1)")
	fs.StringVar(&o.fromJSON, "from-json", "", "print the Markdown and write the plots of a saved run (its JSON file) without measuring")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.rounds == 0 {
		o.rounds = 9
		if o.quick {
			o.rounds = 3
		}
	}
	if o.budget == 0 {
		o.budget = 300 * time.Millisecond
		if o.quick {
			o.budget = 60 * time.Millisecond
		}
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	o.args = args
	return o, nil
}

func main() {
	if isChild() {
		os.Exit(childMain())
	}
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	var rep *Report
	if o.fromJSON != "" {
		rep = &Report{}
		data, err := os.ReadFile(o.fromJSON)
		if err == nil {
			err = json.Unmarshal(data, rep)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		rep.evaluate()
		fmt.Print(rep.markdown())
		if err := rep.write("", o.svgPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	rep, err = run(o)
	if rep != nil {
		rep.evaluate()
		fmt.Print(rep.markdown())
		if werr := rep.write(o.jsonPath, o.svgPath); werr != nil {
			fmt.Fprintln(os.Stderr, "bench:", werr)
			if err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if o.failOnTarget && rep.failed() {
		os.Exit(1)
	}
}
