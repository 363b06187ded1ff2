package main

import (
	"fmt"
	"strings"
)

// HookCost is the kernel run time (bpf_stats) one client operation costs at
// one hook, for issue 13's budget: the hooks it added (setsockopt, egress,
// sockops) against the ones before it (connect4, sendmsg4, sock_create),
// measured in the same run with the same client.
type HookCost struct {
	Op        string  `json:"op"`   // tcp (socket+connect+close) | udp (sendto)
	What      string  `json:"what"` // exewall | empty programs (the floor)
	Hook      string  `json:"hook"` // attach point
	Added     bool    `json:"added"`
	RunsPerOp float64 `json:"runs_per_op"`
	NsPerRun  float64 `json:"ns_per_run"`
	NsPerOp   float64 `json:"ns_per_op"`
}

// wallClock names the HookCost row that holds the client's median time per
// operation (the syscalls, as the user sees them), not a hook.
const wallClock = "syscall (wall clock, median)"

// noGuard names the programs of exewall loaded without its guard hooks.
const noGuard = "exewall without guard hooks"

// guardMarkdown is the report's table of HookCost, with the sums per op.
func guardMarkdown(cs []HookCost) string {
	if len(cs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("### Kernel run time per operation, the datapath hooks and the guard hooks (bpf_stats, one run)\n\n")
	b.WriteString("| programs | operation | hook | guard hook | runs per op | ns per run | ns per op |\n|---|---|---|---|---:|---:|---:|\n")
	sums := map[[2]string][2]float64{}
	for _, c := range cs {
		if c.RunsPerOp == 0 && c.NsPerOp == 0 {
			continue // a hook this operation never reaches
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %v | %.2f | %.1f | %.1f |\n", c.What, c.Op, c.Hook, c.Added, c.RunsPerOp, c.NsPerRun, c.NsPerOp)
		if c.Hook == wallClock {
			continue
		}
		k := [2]string{c.What, c.Op}
		s := sums[k]
		if c.Added {
			s[1] += c.NsPerOp
		} else {
			s[0] += c.NsPerOp
		}
		sums[k] = s
	}
	for _, what := range []string{"exewall", noGuard, "empty programs"} {
		for _, op := range []string{opTCP, opUDP, opSockopt} {
			if s, ok := sums[[2]string{what, op}]; ok {
				fmt.Fprintf(&b, "| %s | %s | **total** | before: %.1f ns | | added: | **+%.1f ns** |\n", what, op, s[0], s[1])
			}
		}
	}
	b.WriteString("\n")
	return b.String()
}
