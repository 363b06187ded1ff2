//lint:file-ignore U1000 the Linux harness (*_linux.go) uses these; elsewhere run_other.go only says it cannot run

package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// Operation names of the connect-path measurements.
const (
	opTCP     = "tcp_connect" // socket + connect + close to a loopback TCP listener
	opUDP     = "udp_sendto"  // sendto on an unconnected UDP socket to a loopback port
	opSockopt = "setsockopt"  // setsockopt(SO_KEEPALIVE) on a TCP socket (guard section)
)

// Engine names.
const (
	engNone       = "none"
	engExewall    = "exewall"
	engNftables   = "nftables"
	engIptables   = "iptables"
	engOpenSnitch = "opensnitch"
	// engFloor is a cgroup connect4/sendmsg4 program that allows everything
	// and does nothing else: the floor of any design hooking those calls.
	engFloor = "bpf-empty"
	// engExewallAllow is exewall with the same policies, but no rule names
	// the client: it falls under the default (allow), the common case of a
	// program no rule mentions.
	engExewallAllow = "exewall-allow-all"
)

// Report is everything one run measured; it is also the JSON file.
type Report struct {
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Command  string          `json:"command"`
	Quick    bool            `json:"quick"`
	Rounds   int             `json:"rounds"`
	BudgetMs float64         `json:"budget_ms_per_measurement"`
	Seed     int64           `json:"seed"`
	Machine  Machine         `json:"machine"`
	Connect  []ConnectResult `json:"connect"`
	Apply    []ApplyResult   `json:"apply"`
	// ApplyProfile is `go tool pprof -top -cum` of replacing Applies.
	ApplyProfile []string         `json:"apply_pprof_top,omitempty"`
	Profile      []ProgProfile    `json:"bpf_profile"`
	Guard        []HookCost       `json:"hook_cost,omitempty"` // guard_linux.go
	Blocks       []BlockCost      `json:"blocks,omitempty"`    // blocks_linux.go
	DNS          *DNSResult       `json:"dns,omitempty"`       // dns_linux.go
	Inbound      *InboundResult   `json:"inbound,omitempty"`   // inbound_linux.go
	Storm        *StormResult     `json:"storm,omitempty"`
	Footprint    *FootprintResult `json:"footprint,omitempty"`
	Scale        *ScaleResult     `json:"scale,omitempty"` // scale_linux.go, scale_report.go
	Targets      []Target         `json:"targets"`
	Notes        []string         `json:"notes"`
}

// Machine describes where the run happened.
type Machine struct {
	Kernel      string     `json:"kernel"`
	CPU         string     `json:"cpu"`
	CPUs        int        `json:"cpus"`
	MemMiB      int        `json:"mem_mib"`
	Virt        string     `json:"virtualization"`
	Clocksource string     `json:"clocksource"`
	Go          string     `json:"go"`
	Nftables    string     `json:"nftables"`
	Iptables    string     `json:"iptables"`
	OpenSnitch  string     `json:"opensnitch,omitempty"`
	Exewall     string     `json:"exewall_binary,omitempty"`
	LoadStart   [3]float64 `json:"loadavg_start"`
	LoadEnd     [3]float64 `json:"loadavg_end"`
	LoadMax1    float64    `json:"loadavg1_max_during_connect"`
}

// ConnectResult is one (engine, rule count, operation) cell of the
// connect-path table. Per round the client measures per-operation cost in
// batches; Median is the median over rounds of each round's median, P99 the
// median over rounds of each round's 99th percentile.
type ConnectResult struct {
	Engine       string    `json:"engine"`
	Rules        int       `json:"rules"`
	Op           string    `json:"op"`
	MedianNs     float64   `json:"median_ns"`
	P99Ns        float64   `json:"p99_ns"`
	Ratio        float64   `json:"ratio"`     // MedianNs / baseline MedianNs
	P99Ratio     float64   `json:"p99_ratio"` // P99Ns / baseline P99Ns
	AddedNs      float64   `json:"added_ns"`  // MedianNs - baseline MedianNs
	RoundMedians []float64 `json:"round_medians_ns"`
	RoundP99s    []float64 `json:"round_p99s_ns"`
	Ops          int       `json:"ops"`
	Errors       int       `json:"errors"`
	FirstError   string    `json:"first_error,omitempty"`
}

// ProgProfile is the kernel's own accounting (kernel.bpf_stats_enabled) of
// the programs attached to the client's cgroup while one operation ran.
type ProgProfile struct {
	Engine      string  `json:"engine"`
	Rules       int     `json:"rules"`
	Op          string  `json:"op"`
	Hook        string  `json:"hook"`
	Runs        uint64  `json:"runs"`
	NsPerRun    float64 `json:"ns_per_run"`
	OpNs        float64 `json:"op_median_ns"` // client's median per operation meanwhile
	RunsPerOp   float64 `json:"runs_per_op"`
	Instruction int     `json:"xlated_insns,omitempty"`
}

// ApplyResult is one policy-apply figure.
type ApplyResult struct {
	Engine string    `json:"engine"`
	What   string    `json:"what"`
	Rules  int       `json:"rules"`
	Ms     []float64 `json:"ms"`
	Median float64   `json:"median_ms"`
	Min    float64   `json:"min_ms"`
	Max    float64   `json:"max_ms"`
	Note   string    `json:"note,omitempty"`
}

// StormResult is the violation pipeline under a denied-connect storm.
type StormResult struct {
	Via             string  `json:"via"` // "daemon" or "backend"
	Children        int     `json:"children"`
	Seconds         float64 `json:"seconds"`
	Attempts        uint64  `json:"attempts"`
	EPERM           uint64  `json:"eperm"`
	KernelDenied    uint64  `json:"kernel_denied"`
	Delivered       uint64  `json:"delivered"`
	Events          uint64  `json:"events"`
	Lost            uint64  `json:"reported_lost"`
	AttemptsPerSec  float64 `json:"attempts_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	DrainSeconds    float64 `json:"drain_seconds"`
	LogLines        int     `json:"violations_log_lines"`
	Note            string  `json:"note,omitempty"`
}

// FootprintResult is the daemon's memory and start-up time.
type FootprintResult struct {
	Points []FootprintPoint `json:"points"`
}

// FootprintPoint is one daemon started with Rules rules.
type FootprintPoint struct {
	Rules       int     `json:"rules"`
	StartMs     float64 `json:"start_to_enforcing_ms"` // exec to READY=1 (policy applied, socket up)
	RSSKiB      int     `json:"rss_kib"`
	HWMKiB      int     `json:"rss_peak_kib"`
	IdleCPUPct  float64 `json:"idle_cpu_pct"` // CPU used while idle, over a few seconds
	IdleSeconds float64 `json:"idle_seconds"`
}

// Target is one pass/fail line of the performance targets.
type Target struct {
	Name    string `json:"name"`
	Want    string `json:"want"`
	Got     string `json:"got"`
	Margin  string `json:"margin"`
	Status  string `json:"status"` // PASS, FAIL, SKIP
	Comment string `json:"comment,omitempty"`
}

func (r *Report) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, msg)
	fmt.Fprintln(os.Stderr, "bench: note:", msg)
}

func (r *Report) failed() bool {
	for _, t := range r.Targets {
		if t.Status == "FAIL" {
			return true
		}
	}
	return false
}

// median and percentile of a sample (copied, not reordered).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return s[0]
	}
	pos := p * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func median(xs []float64) float64 { return percentile(xs, 0.5) }

func msStats(ms []float64) (med, lo, hi float64) {
	if len(ms) == 0 {
		return 0, 0, 0
	}
	return median(ms), percentile(ms, 0), percentile(ms, 1)
}

func (r *Report) connect(engine string, rules int, op string) *ConnectResult {
	for i := range r.Connect {
		c := &r.Connect[i]
		if c.Engine == engine && c.Rules == rules && c.Op == op {
			return c
		}
	}
	return nil
}

// finishConnect fills medians and ratios once every round is in.
func (r *Report) finishConnect() {
	for i := range r.Connect {
		c := &r.Connect[i]
		c.MedianNs = median(c.RoundMedians)
		c.P99Ns = median(c.RoundP99s)
	}
	for i := range r.Connect {
		c := &r.Connect[i]
		if base := r.connect(engNone, 0, c.Op); base != nil && base.MedianNs > 0 && base.P99Ns > 0 {
			c.Ratio = c.MedianNs / base.MedianNs
			c.P99Ratio = c.P99Ns / base.P99Ns
			c.AddedNs = c.MedianNs - base.MedianNs
		}
	}
	sort.SliceStable(r.Connect, func(i, j int) bool {
		a, b := r.Connect[i], r.Connect[j]
		if a.Op != b.Op {
			return a.Op < b.Op
		}
		if engineOrder(a.Engine) != engineOrder(b.Engine) {
			return engineOrder(a.Engine) < engineOrder(b.Engine)
		}
		return a.Rules < b.Rules
	})
}

func engineOrder(e string) int {
	switch e {
	case engNone:
		return 0
	case engFloor:
		return 1
	case engExewall, engExewallAllow:
		return 1
	case engNftables:
		return 2
	case engIptables:
		return 3
	}
	return 4
}

func (r *Report) apply(engine, what string) *ApplyResult {
	for i := range r.Apply {
		if r.Apply[i].Engine == engine && r.Apply[i].What == what {
			return &r.Apply[i]
		}
	}
	return nil
}

func (r *Report) addApply(a ApplyResult) {
	a.Median, a.Min, a.Max = msStats(a.Ms)
	r.Apply = append(r.Apply, a)
}

// profile is the bpf_stats figure of one engine, rule count and hook (the
// empty program's rule count is 0).
func (r *Report) profile(engine string, rules int, hook string) *ProgProfile {
	for i := range r.Profile {
		p := &r.Profile[i]
		if p.Engine == engine && p.Hook == hook && (engine == engFloor || p.Rules == rules) {
			return p
		}
	}
	return nil
}

// maxRules is the largest rule count measured for an engine and op.
func (r *Report) maxRules(engine, op string) *ConnectResult {
	var best *ConnectResult
	for i := range r.Connect {
		c := &r.Connect[i]
		if c.Engine == engine && c.Op == op && (best == nil || c.Rules > best.Rules) {
			best = c
		}
	}
	return best
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// evaluate checks the performance targets against what was measured.
func (r *Report) evaluate() {
	r.Targets = inboundTargets(r.Inbound) // inbound.go
	skip := func(name, want, why string) {
		r.Targets = append(r.Targets, Target{Name: name, Want: want, Status: "SKIP", Comment: why})
	}
	quickNote := func(rules, want int) string {
		if rules != want {
			return fmt.Sprintf("measured at %s rules, not %s (quick mode)", count(rules), count(want))
		}
		return ""
	}

	// Connect-path ratios at the largest exewall rule count.
	for _, t := range []struct {
		op    string
		limit float64
		name  string
	}{
		{opTCP, 1.03, "allowed TCP connect, 100,000 rules"},
		{opUDP, 1.10, "allowed UDP sendto, 100,000 rules, destination lists in use"},
	} {
		want := fmt.Sprintf("<= %.2fx baseline", t.limit)
		c := r.maxRules(engExewall, t.op)
		if c == nil || c.Ratio == 0 {
			skip(t.name, want, "not measured")
			continue
		}
		r.Targets = append(r.Targets, Target{Name: t.name, Want: want,
			Got:     fmt.Sprintf("%.3fx (%s vs %s)", c.Ratio, ns(c.MedianNs), ns(c.MedianNs/c.Ratio)),
			Margin:  fmt.Sprintf("%+.1f%% of baseline", (t.limit-c.Ratio)*100),
			Status:  pass(c.Ratio <= t.limit),
			Comment: quickNote(c.Rules, 100000)})
	}

	// Flat in rule count.
	for _, op := range []string{opTCP, opUDP} {
		name := fmt.Sprintf("flat in rule count (%s): largest rule count within 2%% of 1 rule", op)
		one, big := r.connect(engExewall, 1, op), r.maxRules(engExewall, op)
		if one == nil || big == nil || big.Rules == 1 {
			skip(name, "<= 1.02x", "not measured")
			continue
		}
		f := big.MedianNs / one.MedianNs
		r.Targets = append(r.Targets, Target{Name: name, Want: "within ±2%",
			Got:     fmt.Sprintf("%s rules / 1 rule = %.3f", count(big.Rules), f),
			Margin:  fmt.Sprintf("%+.1f%%", (0.02-math.Abs(f-1))*100),
			Status:  pass(math.Abs(f-1) <= 0.02),
			Comment: quickNote(big.Rules, 100000)})
	}

	// Issue 21: exewall's kernel run time against the empty program's.
	for _, t := range []struct {
		eng   string
		limit float64
	}{{engExewall, 2}, {engExewallAllow, 1.3}} {
		for _, hook := range []string{"connect4", "sendmsg4"} {
			floor := r.profile(engFloor, 0, hook)
			for _, p := range r.Profile {
				if p.Engine != t.eng || p.Hook != hook {
					continue
				}
				name := fmt.Sprintf("%s run time, %s, %s rules: <= %.1fx the empty program's", hook, t.eng, count(p.Rules), t.limit)
				if floor == nil || floor.NsPerRun == 0 {
					skip(name, fmt.Sprintf("<= %.1fx", t.limit), "empty program not profiled")
					continue
				}
				f := p.NsPerRun / floor.NsPerRun
				r.Targets = append(r.Targets, Target{Name: name, Want: fmt.Sprintf("<= %.1fx", t.limit),
					Got:    fmt.Sprintf("%.2fx (%.0f ns vs %.0f ns)", f, p.NsPerRun, floor.NsPerRun),
					Margin: fmt.Sprintf("%+.2fx", t.limit-f), Status: pass(f <= t.limit)})
			}
		}
	}
	if c := r.maxRules(engExewall, opTCP); c != nil && c.Ratio > 0 {
		r.Targets = append(r.Targets, Target{Name: "allowed TCP connect, 100,000 rules (issue 21)", Want: "<= 1.05x baseline",
			Got:    fmt.Sprintf("%.3fx (%s vs %s)", c.Ratio, ns(c.MedianNs), ns(c.MedianNs/c.Ratio)),
			Margin: fmt.Sprintf("%+.1f%% of baseline", (1.05-c.Ratio)*100), Status: pass(c.Ratio <= 1.05),
			Comment: quickNote(c.Rules, 100000)})
	}

	// At 1,000 rules, exewall's added cost < 1/50 of nftables' and iptables'.
	for _, op := range []string{opTCP, opUDP} {
		for _, other := range []string{engNftables, engIptables} {
			name := fmt.Sprintf("added cost at 1,000 rules (%s): exewall < 1/50 of %s", op, other)
			ex, ot := r.connect(engExewall, 1000, op), r.connect(other, 1000, op)
			if ex == nil || ot == nil {
				skip(name, "< 1/50", "not measured")
				continue
			}
			ok := ot.AddedNs > 0 && ex.AddedNs*50 < ot.AddedNs
			got := fmt.Sprintf("exewall %s, %s %s", ns(ex.AddedNs), other, ns(ot.AddedNs))
			margin := "n/a"
			if ex.AddedNs > 0 {
				margin = fmt.Sprintf("exewall = 1/%.0f of %s", ot.AddedNs/ex.AddedNs, other)
			} else {
				margin = "exewall's added cost is within noise of zero"
			}
			r.Targets = append(r.Targets, Target{Name: name, Want: "ratio < 1/50", Got: got, Margin: margin, Status: pass(ok)})
		}
	}

	// Apply.
	{
		name := "10,000 rules from a validated policy to in force (in-process Apply)"
		first, repl := r.apply(engExewall, "apply: validated policy to in force, fresh backend (includes attach)"),
			r.apply(engExewall, "apply: validated policy to in force, replacing another policy")
		if first == nil || repl == nil {
			skip(name, "< 20 ms", "not measured")
		} else {
			worst := math.Max(first.Median, repl.Median)
			r.Targets = append(r.Targets, Target{Name: name, Want: "< 20 ms",
				Got:     fmt.Sprintf("fresh %.1f ms, replace %.1f ms (median)", first.Median, repl.Median),
				Margin:  fmt.Sprintf("%+.1f ms", 20-worst),
				Status:  pass(worst < 20),
				Comment: quickNote(repl.Rules, 10000)})
		}
	}
	{
		name := "one rule change on a 100-rule policy via the CLI (process start to in force and persisted)"
		a := r.apply(engExewall, "CLI: one rule change (exewall deny/allow)")
		var a100 *ApplyResult
		for i := range r.Apply {
			if r.Apply[i].Engine == engExewall && strings.HasPrefix(r.Apply[i].What, "CLI: one rule change") && r.Apply[i].Rules == 100 {
				a100 = &r.Apply[i]
			}
		}
		_ = a
		if a100 == nil {
			skip(name, "< 20 ms", "not measured (see notes)")
		} else {
			r.Targets = append(r.Targets, Target{Name: name, Want: "< 20 ms",
				Got:    fmt.Sprintf("%.1f ms median (%.1f–%.1f)", a100.Median, a100.Min, a100.Max),
				Margin: fmt.Sprintf("%+.1f ms", 20-a100.Median),
				Status: pass(a100.Median < 20)})
		}
	}

	r.evaluateScale()

	// Storm.
	if s := r.Storm; s == nil {
		skip("denied-connect storm: kernel counters exact, >= 95% delivered, rest reported", "exact, >= 95%", "not measured")
	} else {
		exact := s.KernelDenied == s.EPERM
		pct := 100 * float64(s.Delivered) / float64(max(s.EPERM, 1))
		accounted := s.Delivered+s.Lost == s.KernelDenied
		r.Targets = append(r.Targets,
			Target{Name: "storm: kernel counter equals denied attempts", Want: "exact",
				Got:    fmt.Sprintf("counter %d, attempts denied %d", s.KernelDenied, s.EPERM),
				Margin: fmt.Sprintf("%+d", int64(s.KernelDenied)-int64(s.EPERM)), Status: pass(exact)},
			Target{Name: "storm: events delivered by the " + s.Via, Want: ">= 95%",
				Got:    fmt.Sprintf("%.2f%% (%d of %d, %s/s)", pct, s.Delivered, s.EPERM, count(int(s.DeliveredPerSec))),
				Margin: fmt.Sprintf("%+.2f points", pct-95), Status: pass(pct >= 95)},
			Target{Name: "storm: undelivered events reported as lost", Want: "delivered + lost = counter",
				Got:    fmt.Sprintf("%d + %d = %d vs %d", s.Delivered, s.Lost, s.Delivered+s.Lost, s.KernelDenied),
				Margin: fmt.Sprintf("%+d", int64(s.Delivered+s.Lost)-int64(s.KernelDenied)), Status: pass(accounted)})
	}

	// Footprint.
	{
		name := "daemon RSS with 100,000 rules"
		var big *FootprintPoint
		if r.Footprint != nil {
			for i := range r.Footprint.Points {
				p := &r.Footprint.Points[i]
				if big == nil || p.Rules > big.Rules {
					big = p
				}
			}
		}
		if big == nil || big.Rules == 0 {
			skip(name, "< 40 MiB", "not measured")
		} else {
			mib := float64(big.RSSKiB) / 1024
			r.Targets = append(r.Targets, Target{Name: name, Want: "< 40 MiB",
				Got:     fmt.Sprintf("%.1f MiB (peak %.1f MiB)", mib, float64(big.HWMKiB)/1024),
				Margin:  fmt.Sprintf("%+.1f MiB", 40-mib),
				Status:  pass(mib < 40),
				Comment: quickNote(big.Rules, 100000)})
		}
	}
}
