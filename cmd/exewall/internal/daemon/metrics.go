package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/exewall/exewall/engine"
)

// collector reads the kernel's exact counters at scrape time, so /metrics
// and `exewall status` never disagree.
type collector struct {
	m        *engine.Manager
	conns    *prometheus.Desc
	lost     *prometheus.Desc
	rules    *prometheus.Desc
	managed  *prometheus.Desc
	hookDesc *prometheus.Desc
	logLost  *prometheus.Desc
	logErr   *prometheus.Desc
	fileErr  *prometheus.Desc
	sweepErr *prometheus.Desc
	folded   *prometheus.Desc
	flooding *prometheus.Desc
	dns      *prometheus.Desc
	dnsLive  *prometheus.Desc
	cut      *prometheus.Desc
}

func newCollector(m *engine.Manager) *collector {
	return &collector{
		m: m,
		conns: prometheus.NewDesc("exewall_connections_total",
			"Connection attempts judged in the kernel, by rule (\"\" is the default) and verdict.", []string{"rule", "verdict"}, nil),
		lost: prometheus.NewDesc("exewall_events_lost_total",
			"Violation events lost (ring buffer full or reader too slow).", nil, nil),
		rules:    prometheus.NewDesc("exewall_rules", "Rules in force.", nil, nil),
		managed:  prometheus.NewDesc("exewall_policy_managed", "1 when the policy file is not writable by exewall.", nil, nil),
		hookDesc: prometheus.NewDesc("exewall_hook_active", "Kernel hooks in force.", []string{"hook"}, nil),
		logLost: prometheus.NewDesc("exewall_violations_log_lost_total",
			"Violations the violations log could not keep (disk full, write errors); enforcement is unaffected.", nil, nil),
		logErr: prometheus.NewDesc("exewall_violations_log_failing",
			"1 while the violations log cannot be written.", nil, nil),
		fileErr: prometheus.NewDesc("exewall_policy_file_refused",
			"1 while the policy file on disk is not in force (deleted, empty, invalid); the last good policy is.", nil, nil),
		folded: prometheus.NewDesc("exewall_violations_folded_total",
			"Violation events of flooding programs folded into summaries (the first event of every program and rule is always kept).", nil, nil),
		flooding: prometheus.NewDesc("exewall_violations_flooding_programs",
			"Programs whose violation events are being folded into summaries right now: above 0, a flood is being folded.", nil, nil),
		dns: prometheus.NewDesc("exewall_dns_total",
			"The DNS forwarder of name entries, by what was counted: queries, answers (released after their bindings were in force), bindings (learned or refreshed), evictions (by the per-rule cap), failures (SERVFAIL or dropped).", []string{"what"}, nil),
		dnsLive: prometheus.NewDesc("exewall_dns_bindings_in_force", "Name -> address bindings in force.", nil, nil),
		cut: prometheus.NewDesc("exewall_listeners_cut_total",
			"Listening sockets policy changes cut (forced changes, and changes at start, reload and in managed mode, which are applied and reported, not refused).", nil, nil),
		sweepErr: prometheus.NewDesc("exewall_held_socket_sweep_failing",
			"1 while the last re-judging of held sockets could not finish (connections the policy denies may still be open).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.lost
	ch <- c.rules
	ch <- c.managed
	ch <- c.hookDesc
	ch <- c.logLost
	ch <- c.logErr
	ch <- c.fileErr
	ch <- c.sweepErr
	ch <- c.folded
	ch <- c.flooding
	ch <- c.dns
	ch <- c.dnsLive
	ch <- c.cut
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.m.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.conns, err)
		return
	}
	for rule, n := range st.RuleCounter {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(n.Allowed), rule, "allow")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(n.Denied), rule, "deny")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(n.Audited), rule, "audit")
	}
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.EventsLost))
	ch <- prometheus.MustNewConstMetric(c.rules, prometheus.GaugeValue, float64(st.Rules))
	managed := 0.0
	if st.Managed {
		managed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.managed, prometheus.GaugeValue, managed)
	for _, h := range st.Hooks {
		ch <- prometheus.MustNewConstMetric(c.hookDesc, prometheus.GaugeValue, 1, h)
	}
	ch <- prometheus.MustNewConstMetric(c.logLost, prometheus.CounterValue, float64(st.ViolationsLogLost))
	ch <- prometheus.MustNewConstMetric(c.logErr, prometheus.GaugeValue, bool01(st.ViolationsLogError != ""))
	ch <- prometheus.MustNewConstMetric(c.fileErr, prometheus.GaugeValue, bool01(st.PolicyFileError != ""))
	ch <- prometheus.MustNewConstMetric(c.folded, prometheus.CounterValue, float64(st.ViolationsFolded))
	ch <- prometheus.MustNewConstMetric(c.flooding, prometheus.GaugeValue, float64(st.ViolationsFlooding))
	ch <- prometheus.MustNewConstMetric(c.sweepErr, prometheus.GaugeValue, bool01(st.HeldSocketSweepError != ""))
	if n := st.Names; n != nil {
		for what, v := range map[string]uint64{"queries": n.Queries, "answers": n.Answers, "bindings": n.Bindings,
			"evictions": n.Evictions, "failures": n.Failures} {
			ch <- prometheus.MustNewConstMetric(c.dns, prometheus.CounterValue, float64(v), what)
		}
		ch <- prometheus.MustNewConstMetric(c.dnsLive, prometheus.GaugeValue, float64(n.InForce))
	}
	ch <- prometheus.MustNewConstMetric(c.cut, prometheus.CounterValue, float64(st.ListenersCut))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type metrics struct {
	reg        *prometheus.Registry
	violations *prometheus.CounterVec
	tamper     prometheus.Counter
}

func newMetrics(m *engine.Manager) *metrics {
	reg := prometheus.NewRegistry()
	mt := &metrics{
		reg: reg,
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exewall_violations_total", Help: "Denied or audited attempts reported, by verdict (an aggregated event adds its count)."}, []string{"verdict"}),
		tamper: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exewall_tamper_events_total", Help: "Differences between the kernel and the policy found and repaired by sync."}),
	}
	reg.MustRegister(newCollector(m), mt.violations, mt.tamper,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return mt
}

// serve exposes /metrics on addr until ctx is done.
func (mt *metrics) serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(mt.reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return l.Addr(), nil
}
