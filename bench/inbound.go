package main

import (
	"fmt"
	"strings"
)

// InboundResult is the inbound section (inbound_linux.go): receivers over
// loopback with no firewall, under a rule that restricts nothing inbound
// ("open") and under a deny rule whose "in" entries allow the measured
// ports ("restricted"), side by side in one run, with the policy at Rules.
type InboundResult struct {
	Rules  int              `json:"rules"`
	Rounds int              `json:"rounds"`
	Rows   []InboundVariant `json:"variants"`
}

// InboundVariant is one receiver's medians over the rounds.
type InboundVariant struct {
	What string `json:"what"` // none | open | restricted
	// UDP: datagrams sent, CPU (sender thread + receiver process) per
	// datagram, datagrams the receiver read.
	Datagrams   int     `json:"datagrams"`
	Received    int     `json:"received"`
	CPUNsPerDg  float64 `json:"cpu_ns_per_datagram"`
	RecvNsPerDg float64 `json:"receiver_cpu_ns_per_datagram"`
	// TCP: connections accepted per second (socket, connect, close by the
	// sender; accept, close by the receiver).
	ConnsPerSec float64 `json:"accepted_per_sec"`
	// CPU (sender thread + receiver process) per accepted connection: the
	// rate a saturated receiver would reach is its inverse, and unlike the
	// wall-clock rate it does not move with other work on the machine.
	CPUNsPerConn float64 `json:"cpu_ns_per_conn"`
	// The ingress program's kernel run time (bpf_stats), per run.
	UDPNsPerRun float64 `json:"ingress_ns_per_run_udp"`
	// An empty program at the same hook, same packets: bpf_stats' floor.
	EmptyNsPerRun float64 `json:"empty_ns_per_run_udp"`
	TCPNsPerRun   float64 `json:"ingress_ns_per_run_tcp"`
	TCPRunsPerOp  float64 `json:"ingress_runs_per_conn"`
}

func inboundMarkdown(r *InboundResult) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Inbound: receivers over loopback, %s rules, medians of %d rounds\n\n", count(r.Rules), r.Rounds)
	b.WriteString("| receiver | ingress ns per datagram | empty program beside it | above the empty program | CPU ns per datagram (sender + receiver) | receiver CPU ns per datagram | received / sent | ingress ns per run (TCP) | runs per connection | CPU ns per connection | accepted connections per second (wall clock) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, v := range r.Rows {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.0f | %.0f | %d / %d | %.1f | %.2f | %.0f | %.0f |\n", v.What, v.UDPNsPerRun, v.EmptyNsPerRun, v.aboveEmpty(), v.CPUNsPerDg, v.RecvNsPerDg,
			v.Received, v.Datagrams, v.TCPNsPerRun, v.TCPRunsPerOp, v.CPUNsPerConn, v.ConnsPerSec)
	}
	b.WriteString("\n")
	return b.String()
}

// aboveEmpty is the ingress run time per datagram minus that of an empty
// program at the same hook on the same datagrams: bpf_stats' own cost (two
// clock reads around every run) and the call are in both.
func (v *InboundVariant) aboveEmpty() float64 {
	if v.EmptyNsPerRun == 0 {
		return 0
	}
	return v.UDPNsPerRun - v.EmptyNsPerRun
}

func (r *InboundResult) variant(what string) *InboundVariant {
	for i := range r.Rows {
		if r.Rows[i].What == what {
			return &r.Rows[i]
		}
	}
	return nil
}

// inboundTargets are the inbound budgets.
func inboundTargets(r *InboundResult) []Target {
	if r == nil {
		return nil
	}
	none, open, restr := r.variant("none"), r.variant("open"), r.variant("restricted")
	if none == nil || open == nil || restr == nil {
		return nil
	}
	var out []Target
	add := func(name, want, got string, ok bool) {
		out = append(out, Target{Name: name, Want: want, Got: got, Status: pass(ok)})
	}
	rules := count(r.Rules) + " rules"
	for _, t := range []struct {
		v    *InboundVariant
		what string
		max  float64
	}{{open, "no inbound restriction", 15}, {restr, "restricted", 60}} {
		want := fmt.Sprintf("<= %.0f ns per packet", t.max)
		add("inbound: ingress run time, "+t.what+", "+rules, want,
			fmt.Sprintf("%.1f ns (an empty program at the hook: %.1f ns)", t.v.UDPNsPerRun, t.v.EmptyNsPerRun), t.v.UDPNsPerRun <= t.max)
		if t.v.EmptyNsPerRun > 0 {
			add("inbound: ingress run time above an empty program at the same hook, "+t.what+", "+rules, want,
				fmt.Sprintf("%.1f ns (%.1f - %.1f ns)", t.v.aboveEmpty(), t.v.UDPNsPerRun, t.v.EmptyNsPerRun), t.v.aboveEmpty() <= t.max)
		}
	}
	for _, v := range []*InboundVariant{open, restr} {
		ratio := v.CPUNsPerDg / none.CPUNsPerDg
		add("inbound: CPU per datagram, "+v.What+", "+rules, "<= 1.05x no firewall",
			fmt.Sprintf("%.3fx (%.0f vs %.0f ns)", ratio, v.CPUNsPerDg, none.CPUNsPerDg), ratio <= 1.05)
		cr := v.CPUNsPerConn / none.CPUNsPerConn
		add("inbound: accepted TCP connections per second (CPU per connection), "+v.What+", "+rules, "<= 1.05x no firewall",
			fmt.Sprintf("%.3fx (%.0f vs %.0f ns; wall clock %.0f vs %.0f per s)", cr, v.CPUNsPerConn, none.CPUNsPerConn, v.ConnsPerSec, none.ConnsPerSec), cr <= 1.05)
	}
	return out
}
