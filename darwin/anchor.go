package darwin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/exewall/exewall/engine"
)

// tokenFile keeps our pf enable reference across daemon restarts.
const tokenFile = "pf-token"

// pfAnchor loads rendered rulesets into one pf anchor with pfctl and removes
// them again. It never disables pf (`pfctl -d`) and never touches the main
// ruleset: it enables pf with a reference (`pfctl -E`), keeps the token in
// StateDir, and hands the reference back (`pfctl -X`) on Remove, so pf ends
// up as it was found. Its methods are safe for concurrent use.
type pfAnchor struct {
	Pfctl    runner       // runs pfctl; Command("pfctl") on macOS
	Path     string       // anchor path; AnchorPath when empty
	StateDir string       // where the enable token is kept; not kept when empty
	Log      *slog.Logger // nil for slog.Default()

	mu      sync.Mutex
	token   string // our enable reference; "" when we hold none
	text    string // the text last loaded
	labels  map[string]ruleLabel
	numbers map[int]ruleLabel // rule number in the anchor → label, as pfctl lists them
	loaded  map[string]bool   // labels pfctl listed after the last load
}

// listedRule is one rule of the anchor as `pfctl -vv -s rules` lists it.
type listedRule struct {
	Nr      int    // the rule's number, as pflog reports it
	Text    string // pfctl's rendering, without the number
	Label   string
	Packets uint64 // packets that matched the rule, or a state it created
	States  uint64 // states alive now
}

func (a *pfAnchor) path() string {
	if a.Path == "" {
		return AnchorPath
	}
	return a.Path
}

// Name is the anchor's last path component, which pflog reports as the
// ruleset of a logged packet.
func (a *pfAnchor) Name() string { return path.Base(a.path()) }

func (a *pfAnchor) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

func (a *pfAnchor) pfctl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return a.Pfctl.Run(ctx, stdin, args...)
}

// Load replaces the anchor's rules and tables with rs in one pfctl
// transaction, then makes sure pf is enabled. When pfctl refuses the text
// the anchor keeps its previous rules.
func (a *pfAnchor) Load(ctx context.Context, rs *ruleset) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.load(ctx, rs)
}

func (a *pfAnchor) load(ctx context.Context, rs *ruleset) error {
	if _, err := a.pfctl(ctx, []byte(rs.Text), "-a", a.path(), "-f", "-"); err != nil {
		return fmt.Errorf("can't load pf anchor %s: %w", a.path(), err)
	}
	a.text, a.labels = rs.Text, rs.Labels
	a.numbers, a.loaded = nil, nil // the old numbers would misname violations
	if err := a.enable(ctx); err != nil {
		return err
	}
	// pfctl may expand and reorder rules; pflog reports the kernel's
	// numbers, so learn them. The rules are in force either way.
	if err := a.readNumbers(ctx); err != nil {
		a.log().Warn("pf rules loaded, but their numbers could not be read: violations will lack rule names", "err", err)
	}
	return nil
}

// enable takes one pf enable reference unless we hold one. A token left by
// an earlier daemon is handed back after the new one is taken, so pf never
// drops to zero references in between.
func (a *pfAnchor) enable(ctx context.Context) error {
	if a.token != "" {
		return nil
	}
	out, err := a.pfctl(ctx, nil, "-E")
	if err != nil {
		return fmt.Errorf("can't enable pf: %w", err)
	}
	tok, ok := parseToken(out)
	if !ok {
		return fmt.Errorf("can't enable pf: no token in pfctl -E output %q", strings.TrimSpace(string(out)))
	}
	old := a.readToken()
	a.token = tok
	if err := a.writeToken(tok); err != nil {
		return fmt.Errorf("pf enabled, but its token %s could not be kept: %w", tok, err)
	}
	if old != "" && old != tok {
		if _, err := a.pfctl(ctx, nil, "-X", old); err != nil {
			// After a reboot the old token is simply gone.
			a.log().Debug("stale pf token not released", "token", old, "err", err)
		}
	}
	return nil
}

var tokenRE = regexp.MustCompile(`Token\s*:\s*(\d+)`)

func parseToken(out []byte) (string, bool) {
	m := tokenRE.FindSubmatch(out)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

func (a *pfAnchor) readToken() string {
	if a.StateDir == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(a.StateDir, tokenFile))
	if err != nil {
		return ""
	}
	tok := strings.TrimSpace(string(b))
	if _, err := strconv.ParseUint(tok, 10, 64); err != nil {
		return ""
	}
	return tok
}

func (a *pfAnchor) writeToken(tok string) error {
	if a.StateDir == "" {
		return nil
	}
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(a.StateDir, tokenFile+".tmp")
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(a.StateDir, tokenFile))
}

// Remove flushes the anchor (`pfctl -a <anchor> -F all`: its rules and
// tables, nothing else) and hands back our enable reference, kept or left
// by an earlier daemon. pf stays enabled if anyone else holds a reference.
func (a *pfAnchor) Remove(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.pfctl(ctx, nil, "-a", a.path(), "-F", "all"); err != nil {
		return fmt.Errorf("can't flush pf anchor %s: %w", a.path(), err)
	}
	a.text, a.labels, a.numbers, a.loaded = "", nil, nil, nil
	tok := a.token
	if tok == "" {
		tok = a.readToken()
	}
	if tok != "" {
		if _, err := a.pfctl(ctx, nil, "-X", tok); err != nil {
			a.log().Debug("pf token not released", "token", tok, "err", err)
		}
	}
	a.token = ""
	if a.StateDir != "" {
		if err := os.Remove(filepath.Join(a.StateDir, tokenFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("can't remove pf token file: %w", err)
		}
	}
	return nil
}

// Rules lists the anchor's rules as pf holds them, with their numbers and
// counters.
func (a *pfAnchor) Rules(ctx context.Context) ([]listedRule, error) {
	out, err := a.pfctl(ctx, nil, "-a", a.path(), "-vv", "-s", "rules")
	if err != nil {
		return nil, fmt.Errorf("can't list pf anchor %s: %w", a.path(), err)
	}
	return parseRules(out), nil
}

func (a *pfAnchor) readNumbers(ctx context.Context) error {
	rules, err := a.Rules(ctx)
	if err != nil {
		return err
	}
	a.numbers = map[int]ruleLabel{}
	a.loaded = labelSet(rules)
	for _, r := range rules {
		if l, ok := a.labelOf(r.Label); ok {
			a.numbers[r.Nr] = l
		}
	}
	return nil
}

// labelOf resolves a label we wrote: from the last load's table, else from
// its own text (a rule name shown as in the label).
func (a *pfAnchor) labelOf(s string) (ruleLabel, bool) {
	if l, ok := a.labels[s]; ok {
		return l, true
	}
	return parseLabel(s)
}

// parseLabel reads back a label Render wrote, exewall:<verdict>:<id>. The
// rule name comes back as safe for a label, possibly truncated.
func parseLabel(s string) (ruleLabel, bool) {
	rest, ok := strings.CutPrefix(s, labelPrefix)
	if !ok {
		return ruleLabel{}, false
	}
	v, id, ok := strings.Cut(rest, ":")
	if !ok {
		return ruleLabel{}, false
	}
	switch engine.Verdict(v) {
	case engine.VerdictAllow, engine.VerdictDeny, engine.VerdictAudit:
	default:
		return ruleLabel{}, false
	}
	if id == "default" {
		return ruleLabel{"", engine.Verdict(v)}, true
	}
	_, name, ok := strings.Cut(id, "-")
	if !ok || !strings.HasPrefix(id, "r") {
		return ruleLabel{}, false
	}
	return ruleLabel{name, engine.Verdict(v)}, true
}

// Lookup returns the label of the anchor's rule number nr, as pflog reports
// it, from the numbers read after the last load.
func (a *pfAnchor) Lookup(nr int) (ruleLabel, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.numbers[nr]
	return l, ok
}

// Enabled reports whether pf is running (`pfctl -s info`).
func (a *pfAnchor) Enabled(ctx context.Context) (bool, error) {
	out, err := a.pfctl(ctx, nil, "-s", "info")
	if err != nil {
		return false, fmt.Errorf("can't read pf status: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "Status:"); ok {
			return strings.HasPrefix(strings.TrimSpace(s), "Enabled"), nil
		}
	}
	return false, fmt.Errorf("can't read pf status: no Status line in %q", strings.TrimSpace(string(out)))
}

// Sync compares the kernel with rs and repairs what differs: rules missing
// or changed behind our back, pf disabled (`pfctl -d` drops every
// reference), or rs itself changed since the last load (the host's subnets
// moved).
func (a *pfAnchor) Sync(ctx context.Context, rs *ruleset) ([]engine.Drift, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var drift []engine.Drift
	rules, err := a.Rules(ctx)
	if err != nil {
		return nil, err
	}
	// Compare with what pf listed right after our load, when we have it:
	// pfctl's optimizer may drop a rule that another covers.
	want := a.loaded
	if want == nil || a.text != rs.Text {
		want = map[string]bool{}
		for l := range rs.Labels {
			want[l] = true
		}
	}
	reload := false
	if !maps.Equal(labelSet(rules), want) {
		drift = append(drift, engine.Drift{What: fmt.Sprintf("pf anchor %s does not hold the policy's rules", a.path())})
		reload = true
	} else if a.text != rs.Text {
		drift = append(drift, engine.Drift{What: "host subnets changed since the last load"})
		reload = true
	}
	on, err := a.Enabled(ctx)
	if err != nil {
		return drift, err
	}
	if !on {
		drift = append(drift, engine.Drift{What: "pf is disabled"})
		a.token = "" // pfctl -d invalidates every token
		reload = true
	}
	if reload {
		if err := a.load(ctx, rs); err != nil {
			return drift, err
		}
		for i := range drift {
			drift[i].Repaired = true
		}
	}
	// exewall never touches the main ruleset (Apple's rule for pf users),
	// so an orphaned anchor is reported, not repaired.
	evaluated, err := a.Evaluated(ctx)
	if err != nil {
		return drift, err
	}
	if !evaluated {
		drift = append(drift, engine.Drift{What: orphaned})
	}
	return drift, nil
}

// orphaned says why the anchor is not evaluated, and what to do.
const orphaned = `the main ruleset no longer evaluates anchor "com.apple/*" (another program replaced or flushed it): ` +
	`exewall's rules are loaded but not enforced; restore it with ` + "`sudo pfctl -f /etc/pf.conf`"

// Evaluated reports whether pf's main ruleset still has the `anchor
// "com.apple/*"` rule through which our anchor is evaluated: a program
// that loads its own pf.conf, or runs `pfctl -F all`, orphans every
// com.apple anchor while they keep their rules.
func (a *pfAnchor) Evaluated(ctx context.Context) (bool, error) {
	out, err := a.pfctl(ctx, nil, "-s", "rules")
	if err != nil {
		return false, fmt.Errorf("can't list pf's main ruleset: %w", err)
	}
	return evaluates(out), nil
}

// evaluates reads `pfctl -s rules` of the main ruleset for the rule that
// evaluates the com.apple anchors.
func evaluates(mainRules []byte) bool {
	for _, l := range strings.Split(string(mainRules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), `anchor "com.apple/*"`) {
			return true
		}
	}
	return false
}

func labelSet(rules []listedRule) map[string]bool {
	s := map[string]bool{}
	for _, r := range rules {
		if r.Label != "" {
			s[r.Label] = true
		}
	}
	return s
}

var (
	ruleLineRE = regexp.MustCompile(`^@(\d+)\s+(.*)$`)
	labelRE    = regexp.MustCompile(`\blabel "([^"]*)"`)
	statRE     = regexp.MustCompile(`(Packets|States):\s*(\d+)`)
)

// parseRules reads `pfctl -vv -s rules`: each rule is "@<nr> <rule>"
// followed by bracketed counter lines; anything else (pfctl's ALTQ
// warnings on stderr) is skipped.
func parseRules(out []byte) []listedRule {
	var rules []listedRule
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := ruleLineRE.FindStringSubmatch(line); m != nil {
			nr, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			r := listedRule{Nr: nr, Text: m[2]}
			if l := labelRE.FindStringSubmatch(m[2]); l != nil {
				r.Label = l[1]
			}
			rules = append(rules, r)
			continue
		}
		if len(rules) == 0 || !strings.HasPrefix(line, "[") {
			continue
		}
		last := &rules[len(rules)-1]
		for _, m := range statRE.FindAllStringSubmatch(line, -1) {
			n, _ := strconv.ParseUint(m[2], 10, 64)
			if m[1] == "Packets" {
				last.Packets = n
			} else {
				last.States = n
			}
		}
	}
	return rules
}

// countRules sums the rules' packet counts by verdict and by rule name. pf
// counts packets, not attempts: a blocked attempt is usually one packet, an
// allowed or audited connection counts every packet it carried.
func countRules(rules []listedRule, lookup func(label string) (ruleLabel, bool)) (engine.Counters, map[string]engine.Counters, int) {
	var total engine.Counters
	byRule := map[string]engine.Counters{}
	names := map[string]bool{}
	for _, r := range rules {
		l, ok := lookup(r.Label)
		if !ok {
			continue
		}
		var c engine.Counters
		switch l.Verdict {
		case engine.VerdictAllow:
			c.Allowed = r.Packets
		case engine.VerdictDeny:
			c.Denied = r.Packets
		case engine.VerdictAudit:
			c.Audited = r.Packets
		}
		total = total.Add(c)
		byRule[l.Rule] = byRule[l.Rule].Add(c)
		if l.Rule != "" {
			names[l.Rule] = true
		}
	}
	return total, byRule, len(names)
}

// State reports what the anchor holds: the number of policy rules found in
// it and pf's counters. Its only hook is the anchor, and only while pf is
// enabled and its main ruleset evaluates the anchor; otherwise the hook
// says "not enforcing" and why.
func (a *pfAnchor) State(ctx context.Context) (engine.State, error) {
	st := engine.State{Backend: "pf", AttachPoint: a.path(), Hooks: []string{"pf anchor " + a.path()}}
	rules, err := a.Rules(ctx)
	if err != nil {
		return st, err
	}
	on, err := a.Enabled(ctx)
	if err != nil {
		return st, err
	}
	evaluated, err := a.Evaluated(ctx)
	if err != nil {
		return st, err
	}
	switch {
	case !on:
		st.Hooks = []string{"not enforcing: pf is disabled"}
	case !evaluated:
		st.Hooks = []string{`not enforcing: pf's main ruleset does not evaluate anchor "com.apple/*"`}
	}
	a.mu.Lock()
	st.Counters, st.RuleCounter, st.Rules = countRules(rules, a.labelOf)
	a.mu.Unlock()
	return st, nil
}
