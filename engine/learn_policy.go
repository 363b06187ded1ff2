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
		local, other := true, false
		for _, d := range dests {
			if d.Proto != "tcp" && d.Proto != "udp" {
				other = true
			}
			if !IsLocal(d.Addr, opts.HostNets) {
				local = false
			}
		}
		var lines []string
		lines = append(lines, summary)
		if local {
			it.view.Action = "local-only"
			lines = append(lines, "only local destinations were seen, so: local-only")
		} else {
			it.view.Action = "deny"
			lines = append(lines, "deny, except the destinations seen:")
			for _, f := range foldNamed(dests, e.Lookups, opts.FoldNames) {
				it.view.Allow = append(it.view.Allow, f.entry)
				it.dests[f.entry] = f.comment
			}
		}
		if other {
			lines = append(lines, "it also used sockets other than TCP and UDP (ping, raw), which only an `action: allow` rule may create")
		}
		for i, d := range dests {
			if i == maxListed {
				lines = append(lines, fmt.Sprintf("  ... and %d more", len(dests)-maxListed))
				break
			}
			lines = append(lines, fmt.Sprintf("  %s x%d", hostPort(d), d.Count))
		}
		it.comment = strings.Join(lines, "\n")
		learned = append(learned, it)
		rules++
	}

	// The policy, built in code, is what the text must parse back to.
	view := PolicyView{Default: prev.Default, Mode: prev.Mode, Rules: []RuleView{}}
	for _, it := range append(kept, learned...) {
		view.Rules = append(view.Rules, it.view)
	}
	want, err := view.Policy()
	if err != nil {
		return nil, nil, fmt.Errorf("learned policy: %w", err)
	}

	root := &yaml.Node{Kind: yaml.MappingNode}
	root.Content = append(root.Content, str("default"), str(prev.Default), str("mode"), str(prev.Mode))
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
		"link-local, this host's subnets). Rules in force before learning are kept",
		"unchanged; default and mode are the ones in force before learning.",
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

// mergeDests sums duplicates (from merged executables) and sorts.
func mergeDests(ds []LearnDest) []LearnDest {
	type key struct {
		a     netip.Addr
		port  uint16
		proto string
	}
	at := map[key]int{}
	var out []LearnDest
	for _, d := range ds {
		d.Addr = d.Addr.Unmap()
		k := key{d.Addr, d.Port, d.Proto}
		if i, ok := at[k]; ok {
			out[i].Count += d.Count
			continue
		}
		at[k] = len(out)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Proto < out[j].Proto
	})
	return out
}

func hostPort(d LearnDest) string {
	if d.Proto != "tcp" && d.Proto != "udp" {
		return fmt.Sprintf("%s %s", d.Addr, d.Proto)
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(d.Addr, d.Port), d.Proto)
}

type folded struct {
	entry   string // a destination entry, ParseDest syntax
	comment string
}

// fold turns destinations into allow entries: per port and protocol,
// addresses are grouped into their /24 (/64) when dense, else listed as
// /32 (/128); then, per prefix and protocol, ports are listed (runs of
// consecutive ports as ranges), and a prefix and ports seen over both TCP
// and UDP are one entry without a protocol. Sockets other than TCP and UDP
// get an entry for the address without port or protocol.
func fold(ds []LearnDest) []folded {
	type pp struct {
		proto string
		port  uint16
	}
	byPort := map[pp][]LearnDest{}
	for _, d := range ds {
		k := pp{d.Proto, d.Port}
		if d.Proto != "tcp" && d.Proto != "udp" {
			k = pp{"", 0}
		}
		byPort[k] = append(byPort[k], d)
	}
	type stat struct {
		count uint64
		addrs map[netip.Addr]bool
	}
	type pk struct {
		prefix netip.Prefix
		proto  string
	}
	ports := map[pk]map[uint16]*stat{}
	for k, list := range byPort {
		groups := map[netip.Prefix][]LearnDest{}
		for _, d := range list {
			bits := 24
			if d.Addr.Is6() {
				bits = 64
			}
			p, _ := d.Addr.Prefix(bits)
			groups[p] = append(groups[p], d)
		}
		for p, g := range groups {
			distinct := map[netip.Addr]bool{}
			for _, d := range g {
				distinct[d.Addr] = true
			}
			limit := dense4
			if p.Addr().Is6() {
				limit = dense6
			}
			for _, d := range g {
				prefix := netip.PrefixFrom(d.Addr, d.Addr.BitLen())
				if len(distinct) >= limit {
					prefix = p
				}
				key := pk{prefix, k.proto}
				if ports[key] == nil {
					ports[key] = map[uint16]*stat{}
				}
				s := ports[key][k.port]
				if s == nil {
					s = &stat{addrs: map[netip.Addr]bool{}}
					ports[key][k.port] = s
				}
				s.count += d.Count
				s.addrs[d.Addr] = true
			}
		}
	}
	// Per prefix: the port list of each protocol.
	type entry struct {
		prefix netip.Prefix
		proto  string
		ranges [][2]uint16
		ports  []map[uint16]*stat
	}
	var entries []entry
	for k, m := range ports {
		var list []uint16
		e := entry{prefix: k.prefix, proto: k.proto, ports: []map[uint16]*stat{m}}
		for port := range m {
			list = append(list, port)
		}
		sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
		for _, p := range list {
			if n := len(e.ranges); n > 0 && e.ranges[n-1][1]+1 == p {
				e.ranges[n-1][1] = p
			} else {
				e.ranges = append(e.ranges, [2]uint16{p, p})
			}
		}
		entries = append(entries, e)
	}
	// Same prefix and ports over TCP and UDP: one entry for both.
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.prefix != b.prefix {
			if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
				return c < 0
			}
			return a.prefix.Bits() < b.prefix.Bits()
		}
		return a.proto < b.proto
	})
	var out []folded
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		if e.proto == "tcp" && i+1 < len(entries) && entries[i+1].prefix == e.prefix &&
			entries[i+1].proto == "udp" && reflect.DeepEqual(entries[i+1].ranges, e.ranges) {
			e.proto = ""
			e.ports = append(e.ports, entries[i+1].ports...)
			i++
		}
		for _, r := range e.ranges {
			d := Dest{Prefix: e.prefix, PortLo: r[0], PortHi: r[1]}
			switch e.proto {
			case "tcp":
				d.Proto = ProtoTCP
			case "udp":
				d.Proto = ProtoUDP
			}
			var count uint64
			addrs := map[netip.Addr]bool{}
			for _, m := range e.ports {
				for port, s := range m {
					if port >= r[0] && port <= r[1] {
						count += s.count
						for a := range s.addrs {
							addrs[a] = true
						}
					}
				}
			}
			c := plural(count, "attempt")
			if len(addrs) > 1 {
				c += fmt.Sprintf(" to %d addresses", len(addrs))
			}
			out = append(out, folded{entry: d.String(), comment: c})
		}
	}
	return out
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
