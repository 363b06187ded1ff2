package main

import (
	"fmt"
	"strings"
)

// DNSResult is the section's figures.
type DNSResult struct {
	Lookups               int     `json:"lookups"`
	DirectP50Us           float64 `json:"direct_p50_us"`
	DirectP99Us           float64 `json:"direct_p99_us"`
	FloorP50Us            float64 `json:"floor_p50_us"` // the cheapest userspace hop (dns_floor_linux.go) to the direct server
	FloorP99Us            float64 `json:"floor_p99_us"`
	ExewallP50Us          float64 `json:"exewall_p50_us"`
	ExewallP99Us          float64 `json:"exewall_p99_us"`
	Connects              int     `json:"connects"`
	CIDROnlyNs            float64 `json:"cidr_rule_without_names_ns"` // connect4 run time, CIDR entry, rule with no name entry
	CIDRNs                float64 `json:"cidr_ns"`                    // CIDR entry of a rule with a name entry
	NameNs                float64 `json:"name_ns"`                    // name entry (bound address)
	Bindings              int     `json:"bindings"`
	KernelBytesPerBinding float64 `json:"kernel_bytes_per_binding"` // name_binds + dests (shared name nodes) memlock growth per binding
	KernelSlabPerBinding  float64 `json:"kernel_slab_per_binding"`  // the same rounded up to the allocator's size class
	UserBytesPerBinding   float64 `json:"user_bytes_per_binding"`
}

func dnsMarkdown(r *DNSResult) string {
	if r == nil {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("### DNS names\n\n| figure | exewall | baseline | target |\n|---|---|---|---|\n")
	fmt.Fprintf(&sb, "| lookup latency p50, %d lookups, loopback (through the forwarder vs a server not steered) | %.1f µs | %.1f µs | %+.1f µs (< 50) |\n",
		r.Lookups, r.ExewallP50Us, r.DirectP50Us, r.ExewallP50Us-r.DirectP50Us)
	fmt.Fprintf(&sb, "| lookup latency p99 | %.1f µs | %.1f µs | %+.1f µs (< 200) |\n", r.ExewallP99Us, r.DirectP99Us, r.ExewallP99Us-r.DirectP99Us)
	fmt.Fprintf(&sb, "| FLOOR: lookup latency p50 / p99 through the cheapest userspace hop (recv, send upstream, recv, send back; blocking, one locked thread) vs direct | %.1f / %.1f µs | %.1f / %.1f µs | %+.1f / %+.1f µs (what any forwarder adds here) |\n",
		r.FloorP50Us, r.FloorP99Us, r.DirectP50Us, r.DirectP99Us, r.FloorP50Us-r.DirectP50Us, r.FloorP99Us-r.DirectP99Us)
	fmt.Fprintf(&sb, "| lookup latency through exewall vs the FLOOR, p50 / p99 | %.1f / %.1f µs | %.1f / %.1f µs | %+.1f / %+.1f µs (exewall's own cost) |\n",
		r.ExewallP50Us, r.ExewallP99Us, r.FloorP50Us, r.FloorP99Us, r.ExewallP50Us-r.FloorP50Us, r.ExewallP99Us-r.FloorP99Us)
	fmt.Fprintf(&sb, "| connect4 run time, name entry vs CIDR entry (same rule), %d connects | %.0f ns | %.0f ns | %+.0f ns (≤ +20) |\n",
		r.Connects, r.NameNs, r.CIDRNs, r.NameNs-r.CIDRNs)
	fmt.Fprintf(&sb, "| connect4 run time, CIDR entry of a rule without names | %.0f ns | | |\n", r.CIDROnlyNs)
	fmt.Fprintf(&sb, "| memory per binding at %d bindings: kernel (name_binds + dests memlock) + daemon heap | %.0f + %.0f = %.0f B | | ≤ 256 B |\n",
		r.Bindings, r.KernelBytesPerBinding, r.UserBytesPerBinding, r.KernelBytesPerBinding+r.UserBytesPerBinding)
	fmt.Fprintf(&sb, "| the same with the kernel element at its allocator size class (what the slab really gives it) | %.0f + %.0f = %.0f B | | ≤ 256 B |\n\n",
		r.KernelSlabPerBinding, r.UserBytesPerBinding, r.KernelSlabPerBinding+r.UserBytesPerBinding)
	return sb.String()
}
