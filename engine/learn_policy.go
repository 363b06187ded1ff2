package engine

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Folding: this many distinct addresses of one /24 (IPv6: one /64) on
// one port make the whole /24 (/64) allowed; fewer are listed one by one.
const (
	dense4 = 8
	dense6 = 8
)

// maxListed bounds the destinations a rule's comment lists.
const maxListed = 12

// LearnOptions says how to turn a learning report into a policy.
type LearnOptions struct {
	// HostNets are this host's own subnets, local for `local-only`.
	HostNets []netip.Prefix
	// SameFile reports whether two paths are one executable; nil
	// compares the paths.
	SameFile func(a, b string) bool
	// Ended is when the session ended (for the header).
	Ended time.Time
	// FoldNames folds names looked up below one domain into a wildcard
	// (learn_names.go).
	FoldNames bool
}

// LearnedPolicy writes a reviewed-ready policy file from what a learning session
// saw: the previous policy's default and mode, its rules unchanged, and one
// rule per executable seen that no previous rule names. The result always
// parses (Parse) to the policy it describes.
func LearnedPolicy(rep LearnReport, opts LearnOptions) ([]byte, *Policy, error) {
	same := opts.SameFile
	if same == nil {
		same = func(a, b string) bool { return a == b }
	}
	prev := rep.Previous
	names := map[string]bool{}
	for _, r := range prev.Rules {
		names[r.Name] = true
	}

	type item struct {
		view    RuleView
		comment string
		dests   map[string]string // allow entry -> line comment
	}
	var kept, learned []*item
	for _, r := range prev.Rules {
		kept = append(kept, &item{view: r, comment: "kept from the policy in force before learning"})
	}

	// Merge executables that are one file (hard links, symlinks).
	var exes []LearnExe
	var notes []string
	for _, e := range rep.Observed {
		if p, ok := strings.CutSuffix(e.Exe, " (deleted)"); ok {
			notes = append(notes, fmt.Sprintf("%s was replaced or deleted while it ran; its rule names the path", p))
			e.Exe = p
		}
		merged := false
		for i := range exes {
			if exes[i].Exe == e.Exe || same(exes[i].Exe, e.Exe) {
				exes[i].Events += e.Events
				exes[i].Dests = append(exes[i].Dests, e.Dests...)
				exes[i].Comms = appendNew(exes[i].Comms, e.Comms...)
				exes[i].Lookups = append(exes[i].Lookups, e.Lookups...)
				merged = true
				break
			}
		}
		if !merged {
			exes = append(exes, e)
		}
	}

	rules := 0
	for _, e := range exes {
		dests := mergeDests(e.Dests)
		summary := fmt.Sprintf("observed %s: %s to %s (comm %s)",
			e.Exe, plural(e.Events, "attempt"), plural(uint64(len(dests)), "destination"), strings.Join(e.Comms, ", "))
		if at := previousRule(prev.Rules, e.Exe, same); at >= 0 {
			kept[at].comment += "; " + summary + ", left as it was"
			continue
		}
		name := DeriveName(Selector{Exe: e.Exe})
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d", DeriveName(Selector{Exe: e.Exe}), n)
		}
		names[name] = true
		it := &item{view: RuleView{Name: name, Exe: e.Exe}, dests: map[string]string{}}
		var outs, ins []LearnDest
		for _, d := range dests {
			if d.Direction == DirIn.String() {
				ins = append(ins, d)
			} else {
				outs = append(outs, d)
			}
		}
		local, other := true, false
		for _, d := range outs {
			if d.Proto != "tcp" && d.Proto != "udp" {
				other = true
			}
			if !IsLocal(d.Addr, opts.HostNets) {
				local = false
			}
		}
		var lines []string
		lines = append(lines, summary)
		switch {
		case local && len(outs) == 0:
			it.view.Action = "local-only"
			lines = append(lines, "it opened no connection, so: local-only, with what it accepted")
		case local:
			it.view.Action = "local-only"
			lines = append(lines, "only local destinations were seen, so: local-only")
		default:
			it.view.Action = "deny"
			lines = append(lines, "deny, except the destinations seen:")
			for _, f := range foldNamed(outs, e.Lookups, opts.FoldNames) {
				it.view.Allow = append(it.view.Allow, f.entry)
				it.dests[f.entry] = f.comment
			}
		}
		for _, f := range inbound(ins, local, opts.HostNets) {
			it.view.Allow = append(it.view.Allow, f.entry)
			it.dests[f.entry] = f.comment
		}
		if other {
			lines = append(lines, "it also used sockets other than TCP and UDP (ping, raw), which only an `action: allow` rule may create")
		}
		for i, d := range dests {
			if i == maxListed {
				lines = append(lines, fmt.Sprintf("  ... and %d more", len(dests)-maxListed))
				break
			}
			if d.Direction == DirIn.String() {
				lines = append(lines, fmt.Sprintf("  accepted %s on local port %d/%s x%d", d.Addr, d.Port, d.Proto, d.Count))
				continue
			}
			lines = append(lines, fmt.Sprintf("  %s x%d", hostPort(d), d.Count))
		}
		it.comment = strings.Join(lines, "\n")
		learned = append(learned, it)
		rules++
	}

	// The policy, built in code, is what the text must parse back to.
	view := PolicyView{Default: prev.Default, Mode: prev.Mode, DefaultInbound: prev.DefaultInbound,
		Resolvers: prev.Resolvers, Rules: []RuleView{}}
	for _, it := range append(kept, learned...) {
		view.Rules = append(view.Rules, it.view)
	}
	want, err := view.Policy()
	if err != nil {
		return nil, nil, fmt.Errorf("learned policy: %w", err)
	}

	root := &yaml.Node{Kind: yaml.MappingNode}
	root.Content = append(root.Content, str("default"), str(prev.Default), str("mode"), str(prev.Mode))
	if prev.DefaultInbound != "" {
		root.Content = append(root.Content, str("default_inbound"), str(prev.DefaultInbound))
	}
	if len(prev.Resolvers) > 0 {
		var rs yaml.Node
		if err := rs.Encode(prev.Resolvers); err != nil {
			return nil, nil, err
		}
		root.Content = append(root.Content, str("resolvers"), &rs)
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	if len(view.Rules) == 0 {
		seq.Style = yaml.FlowStyle
	}
	root.Content = append(root.Content, str("rules"), seq)
	for _, it := range append(kept, learned...) {
		var n yaml.Node
		if err := n.Encode(it.view); err != nil {
			return nil, nil, err
		}
		n.HeadComment = comment(it.comment)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "allow" {
				for _, e := range n.Content[i+1].Content {
					if c := it.dests[e.Value]; c != "" {
						e.LineComment = "# " + c
					}
				}
			}
		}
		seq.Content = append(seq.Content, &n)
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	doc.HeadComment = comment(header(rep, opts, rules, notes))

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, nil, fmt.Errorf("write learned policy: %w", err)
	}
	enc.Close()
	got, err := Parse(buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("learned policy does not parse back (a bug): %w\n%s", err, buf.Bytes())
	}
	if !reflect.DeepEqual(ViewPolicy(got), ViewPolicy(want)) {
		return nil, nil, fmt.Errorf("learned policy does not read back as written (a bug):\n%s", buf.Bytes())
	}
	return buf.Bytes(), got, nil
}

func header(rep LearnReport, opts LearnOptions, rules int, notes []string) string {
	end := opts.Ended
	if end.IsZero() {
		end = time.Now()
	}
	host, _ := os.Hostname()
	lines := []string{
		fmt.Sprintf("exewall policy learned on %s from %s to %s (%s).", host,
			rep.Started.Format(time.RFC3339), end.Format(time.RFC3339), end.Sub(rep.Started).Round(time.Second)),
		fmt.Sprintf("%d connection attempts by %d executables were seen (reported, none blocked).", rep.Events, rep.Exes),
		"",
		"One rule per executable seen: `deny` with the destinations it reached allowed",
		fmt.Sprintf("(%d+ addresses of one /24 or /64 on one port become the whole prefix), or", dense4),
		"`local-only` when it only talked to local networks (loopback, private,",
		"link-local, this host's subnets). A program that accepted connections or",
		"datagrams gets \"in\" entries keeping it reachable on each local port it",
		"served, from any peer, so the policy works with `default_inbound: deny`.",
		"Rules in force before learning are kept unchanged; default, mode and",
		"default_inbound are the ones in force before learning.",
		fmt.Sprintf("Learned rules: %d.", rules),
		"",
		"Review, then: exewall diff FILE && exewall apply -f FILE",
		"To watch before blocking, set `mode: audit`, apply, read `exewall violations`,",
		"then `exewall mode enforce`.",
	}
	if n := lookupNote(rep, opts); n != "" {
		lines = append(lines, "", n)
	}
	if rep.EndReason != "" {
		lines = append(lines, "", "Learning ended: "+rep.EndReason+".")
	}
	if len(rep.Unattributed) > 0 {
		var comms []string
		for c, n := range rep.Unattributed {
			comms = append(comms, fmt.Sprintf("%s (%d)", c, n))
		}
		sort.Strings(comms)
		lines = append(lines, "",
			"Not learned: attempts whose executable could not be named (the exec hook",
			"is unavailable and the process had exited), by command name: "+strings.Join(comms, ", "))
	}
	if rep.NotSent > 0 {
		lines = append(lines, "", fmt.Sprintf("Not learned: %d UDP connects that sent nothing (glibc's getaddrinfo connects", rep.NotSent),
			"a UDP socket to each candidate address to sort them); they allow nothing.")
	}
	if rep.Dropped > 0 {
		lines = append(lines, fmt.Sprintf("Not learned: %d attempts beyond the session's table size.", rep.Dropped))
	}
	for _, n := range notes {
		lines = append(lines, "Note: "+n+".")
	}
	return strings.Join(lines, "\n")
}

// comment turns lines into a YAML comment block.
func comment(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		if l == "" {
			b.WriteString("#")
		} else {
			b.WriteString("# " + l)
		}
	}
	return b.String()
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func previousRule(rules []RuleView, exe string, same func(a, b string) bool) int {
	for i, r := range rules {
		if r.Exe != "" && (r.Exe == exe || same(r.Exe, exe)) {
			return i
		}
	}
	return -1
}

func appendNew(list []string, more ...string) []string {
	for _, s := range more {
		found := false
		for _, x := range list {
			found = found || x == s
		}
		if !found {
			list = append(list, s)
		}
	}
	return list
}
