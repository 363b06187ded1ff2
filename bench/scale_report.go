package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Scale rows' names.
const (
	scaleFresh  = "apply into a fresh backend"
	scaleAll    = "apply, every rule changed"
	scaleOnePct = "apply, 1% of the rules changed"
)

// ScaleResult is issue 18's section: apply time and memory against rule
// count, and how fast a daemon is ready.
type ScaleResult struct {
	Apply  []ScaleApply  `json:"apply"`
	Daemon []ScaleDaemon `json:"daemon"`
	// HeapTop is `go tool pprof -top` of the daemon's in-use heap at the
	// largest rule count, written after READY.
	HeapTop []string `json:"heap_top,omitempty"`
}

// ScaleApply is one way of putting Rules rules in force.
type ScaleApply struct {
	Engine    string    `json:"engine"`
	What      string    `json:"what"`
	Rules     int       `json:"rules"`
	Ms        []float64 `json:"ms"`
	Median    float64   `json:"median_ms"`
	MaxRSSKiB int       `json:"tool_memcg_peak_kib,omitempty"` // nft / iptables-restore: peak of its memory cgroup
	Load1     float64   `json:"loadavg1"`
}

// ScaleDaemon is one daemon started with Rules rules.
type ScaleDaemon struct {
	Rules      int       `json:"rules"`
	Pins       string    `json:"pins"` // none, adopted
	ReadyMs    float64   `json:"start_to_ready_ms"`
	RSSKiB     int       `json:"rss_kib"`
	RssAnonKiB int       `json:"rss_anon_kib"`
	HWMKiB     int       `json:"rss_peak_kib"`
	MemcgKiB   int       `json:"memcg_usage_kib,omitempty"` // v1 memory.usage_in_bytes: counts BPF maps
	KmemKiB    int       `json:"memcg_kmem_kib,omitempty"`
	IdleCPUPct float64   `json:"idle_cpu_pct_2_to_5s"`
	CLIMs      []float64 `json:"cli_one_change_ms,omitempty"`
	CLIMedian  float64   `json:"cli_one_change_median_ms,omitempty"`
	// After the CLI changes: a sync, which must find nothing amiss, and
	// RssAnon once the daemon has had time to give the changes' garbage
	// back (what an operator sees between changes).
	SyncMs         float64 `json:"sync_after_changes_ms,omitempty"`
	SyncReport     string  `json:"sync_after_changes,omitempty"`
	SettledAnonKiB int     `json:"rss_anon_after_changes_kib,omitempty"`
	// Start to READY of a daemon started again on the first one's state
	// dir (its runnable cache), fresh pins: what a restart sees.
	RestartMs float64 `json:"restart_ready_ms,omitempty"`
	Load1     float64 `json:"loadavg1"`
	// CPU time from exec to READY: the daemon's, the rest of the
	// machine's, and what the hypervisor stole (10 ms resolution).
	StartCPUMs  float64 `json:"start_cpu_ms"`
	OthersCPUMs float64 `json:"start_others_cpu_ms"`
	StolenCPUMs float64 `json:"start_stolen_cpu_ms"`
}

func (s *ScaleResult) apply(eng, what string, n int) *ScaleApply {
	for i := range s.Apply {
		if a := &s.Apply[i]; a.Engine == eng && a.What == what && a.Rules == n {
			return a
		}
	}
	return nil
}

func (s *ScaleResult) daemons(rules int, pins string) []ScaleDaemon {
	var out []ScaleDaemon
	for _, d := range s.Daemon {
		if d.Rules == rules && d.Pins == pins {
			out = append(out, d)
		}
	}
	return out
}

// noisy says when a figure was taken at a load above 1 per core.
func (r *Report) noisy(load float64) string {
	if cpus := r.Machine.CPUs; cpus > 0 && load > float64(cpus) {
		return fmt.Sprintf("noisy: load %.1f on %d CPUs", load, cpus)
	}
	return ""
}

func (s *ScaleResult) sizes() (small, big int) {
	for _, a := range s.Apply {
		if small == 0 || a.Rules < small {
			small = a.Rules
		}
		big = max(big, a.Rules)
	}
	return small, big
}

// evaluateScale adds issue 18's targets.
func (r *Report) evaluateScale() {
	s := r.Scale
	if s == nil {
		return
	}
	add := func(name, want, got string, margin float64, unit string, ok bool, load float64) {
		r.Targets = append(r.Targets, Target{Name: name, Want: want, Got: got, Margin: fmt.Sprintf("%+.1f %s", margin, unit),
			Status: pass(ok), Comment: r.noisy(load)})
	}
	small, big := s.sizes()
	if ex := s.apply(engExewall, scaleOnePct, small); ex != nil {
		add(fmt.Sprintf("%s rules, back-to-back applies, 1%% changed", count(small)), "< 20 ms", msStr(ex.Median), 20-ex.Median, "ms", ex.Median < 20, ex.Load1)
	}
	nft := s.apply(engNftables, "nft -f (new table with all rules)", small)
	for _, t := range []struct {
		what  string
		limit float64
	}{{scaleAll, 0.2}, {scaleFresh, 0.5}} {
		ex := s.apply(engExewall, t.what, small)
		if ex == nil || nft == nil || nft.Median == 0 {
			continue
		}
		f := ex.Median / nft.Median
		add(fmt.Sprintf("%s rules, %s: <= %.1fx nft -f in the same run", count(small), t.what, t.limit), fmt.Sprintf("<= %.1fx", t.limit),
			fmt.Sprintf("%.2fx (%s vs %s)", f, msStr(ex.Median), msStr(nft.Median)), t.limit-f, "x", f <= t.limit, ex.Load1)
	}
	cli := map[int]float64{}
	for _, d := range s.Daemon {
		if d.CLIMedian > 0 {
			cli[d.Rules] = d.CLIMedian
		}
	}
	if v, ok := cli[small]; ok {
		add(fmt.Sprintf("one rule changed through the CLI, %s rules, in force and persisted", count(small)), "< 30 ms", msStr(v), 30-v, "ms", v < 30, r.Machine.LoadEnd[0])
	}
	if big > small {
		for _, what := range []string{scaleFresh, scaleAll, scaleOnePct} {
			a, b := s.apply(engExewall, what, small), s.apply(engExewall, what, big)
			if a == nil || b == nil || a.Median == 0 {
				continue
			}
			f := b.Median / a.Median
			lim := float64(big) / float64(small)
			add(fmt.Sprintf("%s: %s rules < %.0fx %s rules", what, count(big), lim, count(small)), fmt.Sprintf("< %.0fx", lim),
				fmt.Sprintf("%.1fx (%s vs %s)", f, msStr(b.Median), msStr(a.Median)), lim-f, "x", f < lim, b.Load1)
		}
		if a, b := cli[small], cli[big]; a > 0 && b > 0 {
			lim := float64(big) / float64(small)
			add(fmt.Sprintf("CLI one change: %s rules < %.0fx %s rules", count(big), lim, count(small)), fmt.Sprintf("< %.0fx", lim),
				fmt.Sprintf("%.1fx (%s vs %s)", b/a, msStr(b), msStr(a)), lim-b/a, "x", b/a < lim, r.Machine.LoadEnd[0])
		}
	}

	mib := func(kib int) float64 { return float64(kib) / 1024 }
	for _, t := range []struct {
		rules   int
		pins    string
		readyMs float64
		rssMiB  float64
	}{{0, "none", 300, 25}, {0, "adopted", 100, 25}, {10_000, "none", 1000, 30}, {100_000, "none", 5000, 60}} {
		// The targets are for these rule counts only: a quick run's 1,000
		// and 10,000 are not held to the 10,000 and 100,000 ones.
		ds := s.daemons(t.rules, t.pins)
		if len(ds) == 0 || t.rules == 0 && t.readyMs > 300 {
			continue // no applies measured (--only start): no rule counts
		}
		var ready []float64
		worstRSS, worstAnon, worstCg, worstCPU, load := 0, 0, 0, 0.0, 0.0
		for _, d := range ds {
			ready = append(ready, d.ReadyMs)
			worstRSS, worstAnon, worstCg = max(worstRSS, d.RSSKiB), max(worstAnon, d.RssAnonKiB), max(worstCg, d.MemcgKiB)
			worstCPU, load = math.Max(worstCPU, d.IdleCPUPct), math.Max(load, d.Load1)
		}
		med := median(ready)
		label := fmt.Sprintf("daemon, %s rules, %s pins", count(t.rules), map[string]string{"none": "no", "adopted": "adopting its"}[t.pins])
		add(label+": start to READY", fmt.Sprintf("< %.0f ms", t.readyMs), fmt.Sprintf("%s median of %d", msStr(med), len(ready)), t.readyMs-med, "ms", med < t.readyMs, load)
		// The measure is RssAnon: the file-backed rest of VmRSS is
		// the binary's text, shared and reclaimable.
		anon := mib(worstAnon)
		add(label+": RssAnon after start", fmt.Sprintf("< %.0f MiB", t.rssMiB), fmt.Sprintf("%.1f MiB (VmRSS %.1f MiB)", anon, mib(worstRSS)), t.rssMiB-anon, "MiB", anon < t.rssMiB, load)
		if t.rules == 0 && worstCg > 0 {
			add(label+": memory cgroup usage (counts BPF maps)", "< 25 MiB", fmt.Sprintf("%.1f MiB", mib(worstCg)), 25-mib(worstCg), "MiB", mib(worstCg) < 25, load)
		}
		add(label+": idle CPU from 2 s to 5 s after READY", "< 1%", fmt.Sprintf("%.1f%%", worstCPU), 1-worstCPU, "points", worstCPU < 1, load)
	}
	// Not a target of the issue: a check that what the kernel holds after
	// the CLI changes is exactly the policy (the sync once read a third of
	// a large map and rewrote the policy every 30 s).
	for _, d := range s.Daemon {
		if d.SyncReport != "" {
			ok := strings.HasPrefix(d.SyncReport, "in sync")
			add(fmt.Sprintf("daemon, %s rules: sync after the CLI changes", count(d.Rules)), "no drift",
				fmt.Sprintf("%s (%s)", strings.SplitN(d.SyncReport, "\n", 2)[0], msStr(d.SyncMs)), 0, "", ok, d.Load1)
		}
	}
}

// scaleMarkdown is the section's tables.
func (r *Report) scaleMarkdown(b *strings.Builder) {
	s := r.Scale
	if s == nil {
		return
	}
	b.WriteString("### Scale: apply time and memory against rule count (issue 18)\n\n")
	b.WriteString("| engine | what | rules | median | runs | tool memory cgroup peak | load |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, a := range s.Apply {
		rss := ""
		if a.MaxRSSKiB > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(a.MaxRSSKiB)/1024)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %d | %s | %.1f %s |\n", a.Engine, a.What, count(a.Rules), msStr(a.Median), len(a.Ms), rss, a.Load1, r.noisy(a.Load1))
	}
	b.WriteString("\n| daemon rules | pins | start to READY | RSS | RssAnon | peak RSS | memory cgroup (kmem) | idle CPU 2–5 s | CLI one change (median) | RssAnon after the changes and a sync | READY again on its state dir | CPU to READY: daemon / others / stolen | load |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, d := range s.Daemon {
		cg, cli, settled, restart := "", "", "", ""
		if d.RestartMs > 0 {
			restart = msStr(d.RestartMs)
		}
		if d.SettledAnonKiB > 0 {
			settled = fmt.Sprintf("%.1f MiB", float64(d.SettledAnonKiB)/1024)
		}
		if d.MemcgKiB > 0 {
			cg = fmt.Sprintf("%.1f MiB (%.1f MiB)", float64(d.MemcgKiB)/1024, float64(d.KmemKiB)/1024)
		}
		if d.CLIMedian > 0 {
			cli = fmt.Sprintf("%s of %d", msStr(d.CLIMedian), len(d.CLIMs))
		}
		cpu := fmt.Sprintf("%.0f / %.0f / %.0f ms", d.StartCPUMs, d.OthersCPUMs, d.StolenCPUMs)
		if crowd := d.OthersCPUMs + d.StolenCPUMs; crowd > d.ReadyMs/2 {
			// Half a CPU or more went elsewhere while the daemon started.
			cpu += " (crowded)"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %s | %.1f%% | %s | %s | %s | %s | %.1f %s |\n", count(d.Rules), d.Pins, msStr(d.ReadyMs),
			float64(d.RSSKiB)/1024, float64(d.RssAnonKiB)/1024, float64(d.HWMKiB)/1024, cg, d.IdleCPUPct, cli, settled, restart, cpu, d.Load1, r.noisy(d.Load1))
	}
	if len(s.HeapTop) > 0 {
		b.WriteString("\nThe daemon's in-use heap after READY at the largest rule count (`go tool pprof -top -sample_index=inuse_space`):\n\n```\n")
		b.WriteString(strings.Join(s.HeapTop, "\n"))
		b.WriteString("\n```\n")
	}
	b.WriteString("\n")
}

// scaleSVG plots apply time and memory against rule count: exewall's
// applies and daemon RSS, nft -f and iptables-restore with their peak RSS.
func (r *Report) scaleSVG() string {
	s := r.Scale
	const panelW, panelH, left, right, top, bottom = 460.0, 340.0, 64.0, 16.0, 40.0, 48.0
	width, height := panelW*2, panelH+56
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	type series struct {
		label, color, dash string
		pts                [][2]float64 // rules, value
	}
	small, big := s.sizes()
	var apply, mem []series
	for _, t := range []struct{ eng, what, label, dash string }{
		{engExewall, scaleFresh, "exewall, fresh backend", ""},
		{engExewall, scaleAll, "exewall, every rule changed", "6,3"},
		{engExewall, scaleOnePct, "exewall, 1% changed", "2,3"},
		{engNftables, "nft -f (new table with all rules)", "nft -f", ""},
		{engIptables, "iptables-restore --noflush (new chain with all rules)", "iptables-restore", ""},
	} {
		var ap, mp [][2]float64
		for _, n := range []int{small, big} {
			if a := s.apply(t.eng, t.what, n); a != nil && a.Median > 0 {
				ap = append(ap, [2]float64{float64(n), a.Median})
				if a.MaxRSSKiB > 0 {
					mp = append(mp, [2]float64{float64(n), float64(a.MaxRSSKiB) / 1024})
				}
			}
		}
		apply = append(apply, series{t.label, engineColor[t.eng], t.dash, ap})
		if len(mp) > 0 {
			mem = append(mem, series{t.label + " (memory cgroup peak, rules included)", engineColor[t.eng], "", mp})
		}
	}
	var dp [][2]float64
	for _, n := range []int{small, big} {
		if ds := s.daemons(n, "none"); len(ds) > 0 {
			dp = append(dp, [2]float64{float64(n), float64(ds[0].RSSKiB) / 1024})
		}
	}
	mem = append([]series{{"exewall daemon RSS after start", engineColor[engExewall], "", dp}}, mem...)
	var cp [][2]float64
	for _, n := range []int{small, big} {
		if ds := s.daemons(n, "none"); len(ds) > 0 && ds[0].MemcgKiB > 0 {
			cp = append(cp, [2]float64{float64(n), float64(ds[0].MemcgKiB) / 1024})
		}
	}
	mem = append(mem, series{"exewall daemon memory cgroup (BPF maps included)", engineColor[engExewall], "6,3", cp})
	for pi, panel := range []struct {
		title, unit string
		data        []series
	}{{"Putting rules in force (median, log)", "ms", apply}, {"Memory (log)", "MiB", mem}} {
		ox := float64(pi) * panelW
		pw, ph := panelW-left-right, panelH-top-bottom
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, se := range panel.data {
			for _, p := range se.pts {
				lo, hi = math.Min(lo, p[1]), math.Max(hi, p[1])
			}
		}
		if math.IsInf(lo, 1) {
			continue
		}
		yLo, yHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if yHi-yLo < 1 {
			yHi = yLo + 1
		}
		xLo, xHi := math.Log10(float64(small))-0.2, math.Log10(float64(big))+0.2
		x := func(n float64) float64 { return ox + left + pw*(math.Log10(n)-xLo)/(xHi-xLo) }
		y := func(v float64) float64 { return top + ph*(1-(math.Log10(v)-yLo)/(yHi-yLo)) }
		fmt.Fprintf(&b, `<text x="%.1f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", ox+left, html.EscapeString(panel.title))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", ox+left, top, pw, ph)
		for _, n := range []int{small, big} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(float64(n)), top+ph+16, count(n))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">rules</text>`+"\n", ox+left+pw/2, top+ph+34)
		for e := yLo; e <= yHi; e++ {
			yy := y(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", ox+left, yy, ox+left+pw, yy)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+left-6, yy+4, trimFloat(math.Pow(10, e)))
		}
		fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", ox+16, top+ph/2, panel.unit)
		legendY := top + 14
		for _, se := range panel.data {
			if len(se.pts) == 0 {
				continue
			}
			var path strings.Builder
			for i, p := range se.pts {
				fmt.Fprintf(&path, "%s%.1f,%.1f ", map[bool]string{true: "M", false: "L"}[i == 0], x(p[0]), y(p[1]))
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", strings.TrimSpace(path.String()), se.color, se.dash)
			for _, p := range se.pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, %s rules: %s %s</title></circle>`+"\n",
					x(p[0]), y(p[1]), se.color, html.EscapeString(se.label), count(int(p[0])), trimFloat(p[1]), panel.unit)
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n",
				ox+left+8, legendY-4, ox+left+26, legendY-4, se.color, se.dash, ox+left+30, legendY, html.EscapeString(se.label))
			legendY += 14
		}
	}
	fmt.Fprintf(&b, `<text x="8" y="%.0f" font-size="11" fill="#555">%s</text>`+"\n", height-12,
		html.EscapeString(fmt.Sprintf("exewall bench %s; %s, %d CPUs, kernel %s; load %.2f at start, %.2f at end",
			r.Started.Format("2006-01-02"), r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.LoadStart[0], r.Machine.LoadEnd[0])))
	b.WriteString("</svg>\n")
	return b.String()
}
