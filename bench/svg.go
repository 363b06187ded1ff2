package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var engineColor = map[string]string{
	engNone:       "#444444",
	engExewall:    "#1b7f3b",
	engNftables:   "#c0392b",
	engIptables:   "#d68910",
	engOpenSnitch: "#6c3483",
	engFloor:      "#2e86c1",
}

// svg plots the median cost per operation against the rule count, one
// panel per operation, both axes logarithmic. Engines without a rule count
// (no firewall, OpenSnitch) are horizontal lines.
func (r *Report) svg() string {
	const (
		panelW, panelH = 460.0, 340.0
		left, right    = 64.0, 16.0
		top, bottom    = 40.0, 48.0
	)
	ops := []string{opTCP, opUDP}
	width := panelW * float64(len(ops))
	height := panelH + 56
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")

	maxRules := 1
	for _, c := range r.Connect {
		maxRules = max(maxRules, c.Rules)
	}
	xDecades := math.Max(1, math.Ceil(math.Log10(float64(maxRules))))

	for pi, op := range ops {
		ox := float64(pi) * panelW
		pw, ph := panelW-left-right, panelH-top-bottom
		var lo, hi float64 = math.Inf(1), math.Inf(-1)
		for _, c := range r.Connect {
			if c.Op == op && c.MedianNs > 0 {
				lo = math.Min(lo, c.MedianNs)
				hi = math.Max(hi, c.MedianNs)
			}
		}
		if math.IsInf(lo, 1) {
			continue
		}
		yLo := math.Floor(math.Log10(lo/1000)*2) / 2 // µs, half decades
		yHi := math.Ceil(math.Log10(hi/1000)*2) / 2
		if yHi-yLo < 1 {
			yHi = yLo + 1
		}
		x := func(rules int) float64 { return ox + left + pw*math.Log10(float64(max(rules, 1)))/xDecades }
		y := func(nsv float64) float64 { return top + ph*(1-(math.Log10(nsv/1000)-yLo)/(yHi-yLo)) }

		fmt.Fprintf(&b, `<text x="%.1f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", ox+left, html.EscapeString(opTitle(op)))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", ox+left, top, pw, ph)
		for d := 0.0; d <= xDecades; d++ {
			xx := ox + left + pw*d/xDecades
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", xx, top, xx, top+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, top+ph+16, count(int(math.Pow(10, d))))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">rules</text>`+"\n", ox+left+pw/2, top+ph+34)
		for e := yLo; e <= yHi+1e-9; e += 0.5 {
			yy := top + ph*(1-(e-yLo)/(yHi-yLo))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", ox+left, yy, ox+left+pw, yy)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+left-6, yy+4, trimFloat(math.Pow(10, e)))
		}
		fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">µs per operation (median, log)</text>`+"\n", ox+16, top+ph/2)

		legendY := top + 14
		for _, eng := range []string{engNone, engFloor, engExewall, engNftables, engIptables, engOpenSnitch} {
			var pts []ConnectResult
			for _, c := range r.Connect {
				if c.Op == op && c.Engine == eng && c.MedianNs > 0 {
					pts = append(pts, c)
				}
			}
			if len(pts) == 0 {
				continue
			}
			color := engineColor[eng]
			label := eng
			if eng == engNone || eng == engOpenSnitch || eng == engFloor {
				yy := y(pts[0].MedianNs)
				dash := "6,4"
				if eng != engNone {
					dash = "2,3"
				}
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="%s"/>`+"\n",
					ox+left, yy, ox+left+pw, yy, color, dash)
				if eng == engNone {
					label = "no firewall"
				} else {
					label = fmt.Sprintf("%s (%.2fx)", eng, pts[0].Ratio)
				}
			} else {
				var path strings.Builder
				for i, c := range pts {
					cmd := "L"
					if i == 0 {
						cmd = "M"
					}
					fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, x(c.Rules), y(c.MedianNs))
				}
				fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.TrimSpace(path.String()), color)
				for _, c := range pts {
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s %s rules: %s (%.3fx)</title></circle>`+"\n",
						x(c.Rules), y(c.MedianNs), color, eng, count(c.Rules), ns(c.MedianNs), c.Ratio)
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="10" text-anchor="middle">%.2fx</text>`+"\n",
						x(c.Rules), y(c.MedianNs)-7, color, c.Ratio)
				}
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="3" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
				ox+left+10, legendY-4, color, ox+left+28, legendY, html.EscapeString(label))
			legendY += 15
		}
	}
	fmt.Fprintf(&b, `<text x="8" y="%.0f" font-size="11" fill="#555">%s</text>`+"\n", height-12,
		html.EscapeString(fmt.Sprintf("exewall bench %s, %d rounds; %s, %d CPUs, kernel %s; load %.2f at start",
			r.Started.Format("2006-01-02"), r.Rounds, r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.Machine.LoadStart[0])))
	b.WriteString("</svg>\n")
	return b.String()
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	if strings.Contains(s, "e") {
		s = fmt.Sprintf("%.0f", v)
	}
	return s
}
