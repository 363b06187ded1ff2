package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

func ns(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.Abs(v) >= 10000:
		return fmt.Sprintf("%.1f µs", v/1000)
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.2f µs", v/1000)
	}
	return fmt.Sprintf("%.0f ns", v)
}

// count renders 100000 as 100,000.
func count(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func opTitle(op string) string {
	if op == opTCP {
		return "TCP socket+connect+close (loopback)"
	}
	return "UDP sendto, unconnected (loopback)"
}

// markdown renders the report for stdout and docs/BENCHMARKS.md.
func (r *Report) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "## exewall benchmark (%s)\n\n", map[bool]string{true: "quick", false: "full"}[r.Quick])
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- started %s, took %s; %d interleaved rounds, %.0f ms per engine, operation and round; seed %d\n",
		r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second), r.Rounds, r.BudgetMs, r.Seed)
	fmt.Fprintf(&b, "- machine: %s, %d CPUs, %d MiB, %s; kernel %s; clocksource %s; %s\n", m.CPU, m.CPUs, m.MemMiB, m.Virt, m.Kernel, m.Clocksource, m.Go)
	fmt.Fprintf(&b, "- tools: %s; %s", m.Nftables, m.Iptables)
	if m.Exewall != "" {
		fmt.Fprintf(&b, "; %s", m.Exewall)
	}
	if m.OpenSnitch != "" {
		fmt.Fprintf(&b, "; %s", m.OpenSnitch)
	}
	fmt.Fprintf(&b, "\n- load average: %.2f %.2f %.2f at start, %.2f %.2f %.2f at end, 1-minute max %.2f during the connect rounds\n\n",
		m.LoadStart[0], m.LoadStart[1], m.LoadStart[2], m.LoadEnd[0], m.LoadEnd[1], m.LoadEnd[2], m.LoadMax1)

	if len(r.Connect) > 0 {
		b.WriteString("### Connect path (per operation; median of per-round medians, p99 = median of per-round p99s)\n\n")
		for _, op := range []string{opTCP, opUDP} {
			fmt.Fprintf(&b, "**%s**\n\n", opTitle(op))
			b.WriteString("| engine | rules | median | ratio | added | p99 | p99 ratio | round medians (min–max) | ops | errors |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
			for _, c := range r.Connect {
				if c.Op != op {
					continue
				}
				rules := count(c.Rules)
				if c.Engine == engNone || c.Engine == engOpenSnitch || c.Engine == engFloor {
					rules = "–"
				}
				added := ns(c.AddedNs)
				if c.Engine == engNone {
					added = "–"
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %.3fx | %s | %s | %.2fx | %s–%s | %s | %d |\n", c.Engine, rules, ns(c.MedianNs), c.Ratio,
					added, ns(c.P99Ns), c.P99Ratio, ns(percentile(c.RoundMedians, 0)), ns(percentile(c.RoundMedians, 1)), count(c.Ops), c.Errors)
			}
			b.WriteString("\n")
		}
	}
	if len(r.Profile) > 0 {
		b.WriteString("### Where the exewall time goes: kernel run time of the attached programs (kernel.bpf_stats_enabled)\n\n")
		b.WriteString("| engine | rules | operation | hook | runs per op | ns per program run | op median meanwhile | translated insns |\n|---|---:|---|---|---:|---:|---:|---:|\n")
		for _, p := range r.Profile {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %.0f ns | %s | %d |\n", p.Engine, count(p.Rules), p.Op, p.Hook, p.RunsPerOp, p.NsPerRun, ns(p.OpNs), p.Instruction)
		}
		b.WriteString("\n")
	}
	b.WriteString(blocksMarkdown(r.Blocks))
	b.WriteString(guardMarkdown(r.Guard))
	b.WriteString(dnsMarkdown(r.DNS))
	b.WriteString(inboundMarkdown(r.Inbound))
	if len(r.Apply) > 0 {
		b.WriteString("### Policy apply\n\n| engine | what | rules | median | min–max | runs | note |\n|---|---|---:|---:|---|---:|---|\n")
		for _, a := range r.Apply {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s–%s | %d | %s |\n", a.Engine, a.What, count(a.Rules), msStr(a.Median), msStr(a.Min), msStr(a.Max), len(a.Ms), a.Note)
		}
		b.WriteString("\n")
	}
	if len(r.ApplyProfile) > 0 {
		b.WriteString("Where a replacing in-process Apply spends its time (Go CPU profile, `go tool pprof -top -cum`):\n\n```\n")
		for _, l := range r.ApplyProfile {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n\n")
	}
	if s := r.Storm; s != nil {
		b.WriteString("### Violation pipeline (denied-connect storm)\n\n")
		b.WriteString("| via | children | seconds | attempts | denied (EPERM) | kernel counter | delivered | reported lost | attempts/s | delivered/s | drain |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(&b, "| %s | %d | %.1f | %s | %s | %s | %s (%.2f%%) | %s | %s | %s | %.1f s |\n\n", s.Via, s.Children, s.Seconds,
			count(int(s.Attempts)), count(int(s.EPERM)), count(int(s.KernelDenied)), count(int(s.Delivered)),
			100*float64(s.Delivered)/float64(max(s.EPERM, 1)), count(int(s.Lost)), count(int(s.AttemptsPerSec)), count(int(s.DeliveredPerSec)), s.DrainSeconds)
		if s.Note != "" {
			fmt.Fprintf(&b, "%s\n\n", s.Note)
		}
	}
	if f := r.Footprint; f != nil && len(f.Points) > 0 {
		b.WriteString("### Daemon footprint\n\n| rules | start to enforcing (READY=1) | RSS | peak RSS | idle CPU |\n|---:|---:|---:|---:|---:|\n")
		for _, p := range f.Points {
			fmt.Fprintf(&b, "| %s | %s | %.1f MiB | %.1f MiB | %.1f%% over %.0f s |\n", count(p.Rules), msStr(p.StartMs),
				float64(p.RSSKiB)/1024, float64(p.HWMKiB)/1024, p.IdleCPUPct, p.IdleSeconds)
		}
		b.WriteString("\n")
	}
	r.scaleMarkdown(&b)
	if len(r.Targets) > 0 {
		b.WriteString("### Targets\n\n| target | want | got | margin | result |\n|---|---|---|---|---|\n")
		for _, t := range r.Targets {
			got := t.Got
			if t.Comment != "" {
				got += " — " + t.Comment
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | **%s** |\n", t.Name, t.Want, got, t.Margin, t.Status)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("### Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func msStr(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// write saves the JSON file and the plot.
func (r *Report) write(jsonPath, svgPath string) error {
	if jsonPath != "" {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", jsonPath, err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", jsonPath)
	}
	if svgPath != "" && r.Scale != nil && len(r.Scale.Apply) > 0 {
		path := strings.TrimSuffix(svgPath, ".svg") + "-scale.svg"
		if err := os.WriteFile(path, []byte(r.scaleSVG()), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", path)
	}
	if svgPath != "" && len(r.Connect) > 0 {
		if err := os.WriteFile(svgPath, []byte(r.svg()), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", svgPath, err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", svgPath)
	}
	return nil
}
