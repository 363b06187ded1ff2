package main

import (
	"fmt"
	"strings"
)

// BlockCost is the kernel run time (bpf_stats) of one building block of a
// verdict, alone in a program at one hook: what any program that does that
// much costs on this machine, whatever it decides. It is the floor under
// the datapath's ratios to the empty program.
type BlockCost struct {
	Block    string    `json:"block"` // blockEmpty, ...
	Hook     string    `json:"hook"`  // connect4 | sendmsg4
	NsPerRun []float64 `json:"ns_per_run"`
	Median   float64   `json:"median_ns"`
}

// blockEmpty is the block every other is compared with (the others are in
// blocks_linux.go).
const blockEmpty = "empty (return allow)"

// blocksMarkdown is the report's table of BlockCost, with each block's
// ratio to the empty program at the same hook.
func blocksMarkdown(cs []BlockCost) string {
	if len(cs) == 0 {
		return ""
	}
	empty := map[string]float64{}
	for _, c := range cs {
		if c.Block == blockEmpty {
			empty[c.Hook] = c.Median
		}
	}
	var b strings.Builder
	b.WriteString("### Building blocks of a verdict: kernel run time of programs that do only this (bpf_stats, median of the rounds)\n\n")
	b.WriteString("| block | hook | ns per run | × empty | rounds (min–max) |\n|---|---|---:|---:|---|\n")
	for _, c := range cs {
		lo, hi := minMax(c.NsPerRun)
		ratio := "–"
		if e := empty[c.Hook]; e > 0 {
			ratio = fmt.Sprintf("%.2fx", c.Median/e)
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f ns | %s | %d (%.0f–%.0f ns) |\n", c.Block, c.Hook, c.Median, ratio, len(c.NsPerRun), lo, hi)
	}
	b.WriteString("\n")
	return b.String()
}

func minMax(v []float64) (lo, hi float64) {
	for i, x := range v {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}
