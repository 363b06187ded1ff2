package engine

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// LearnLookup is one DNS answer a program received while learning: Name
// (the name it asked) resolved to Addr. The DNS forwarder reports them
// (dnsproxy.LearnLookups) with the program's executable.
type LearnLookup struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
}

// maxLearnLookups bounds the lookups a session keeps (distinct executable,
// name and address); what does not fit is counted as dropped.
const maxLearnLookups = 100000

type lookupKey struct {
	exe  string
	name string
	addr netip.Addr
}

// ObserveLookups records, for a learning session in progress, that exe's
// program looked names up: the learned policy then allows the name, not the
// address, where the program connected to an address it looked up. Without
// a session it does nothing.
func (m *Manager) ObserveLookups(exe string, lookups []LearnLookup) {
	ls := m.learn.Load()
	if ls == nil || exe == "" {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.active {
		return
	}
	if ls.lookups == nil {
		ls.lookups = map[lookupKey]bool{}
	}
	for _, l := range lookups {
		name, err := ParseName(l.Name)
		if err != nil || strings.HasPrefix(name, "*.") || !l.Addr.IsValid() {
			continue
		}
		k := lookupKey{exe, name, l.Addr.Unmap()}
		if !ls.lookups[k] && len(ls.lookups) >= maxLearnLookups {
			ls.dropped++
			continue
		}
		ls.lookups[k] = true
	}
}

// lookupsOf returns exe's lookups, sorted. ls.mu is held.
func (ls *learnSession) lookupsOf(exe string) []LearnLookup {
	var out []LearnLookup
	for k := range ls.lookups {
		if k.exe == exe {
			out = append(out, LearnLookup{Name: k.name, Addr: k.addr})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}

// foldNamed turns destinations into allow entries: a destination whose
// address the program looked up becomes an entry for each name it looked
// up with that answer (its ports and protocol as fold lists them); the
// others are folded as addresses (fold). With foldNames, two or more names
// directly below one domain (a.example.com, b.example.com) become
// *.example.com; never above a registrable domain (no *.co.uk).
func foldNamed(ds []LearnDest, lookups []LearnLookup, foldNames bool) []folded {
	names := map[netip.Addr][]string{}
	for _, l := range lookups {
		a := l.Addr.Unmap()
		if !containsStr(names[a], l.Name) {
			names[a] = append(names[a], l.Name)
		}
	}
	var plain, named []LearnDest
	for _, d := range ds {
		if len(names[d.Addr.Unmap()]) > 0 {
			named = append(named, d)
		} else {
			plain = append(plain, d)
		}
	}
	rename := map[string]string{}
	if foldNames {
		rename = wildcards(names)
	}
	type nk struct {
		name  string
		proto string
	}
	type stat struct {
		count uint64
		addrs map[netip.Addr]bool
	}
	ports := map[nk]map[uint16]*stat{}
	for _, d := range named {
		k := nk{proto: d.Proto}
		port := d.Port
		if d.Proto != "tcp" && d.Proto != "udp" {
			k.proto, port = "", 0
		}
		for _, n := range names[d.Addr.Unmap()] {
			k.name = n
			if w, ok := rename[n]; ok {
				k.name = w
			}
			if ports[k] == nil {
				ports[k] = map[uint16]*stat{}
			}
			s := ports[k][port]
			if s == nil {
				s = &stat{addrs: map[netip.Addr]bool{}}
				ports[k][port] = s
			}
			s.count += d.Count
			s.addrs[d.Addr.Unmap()] = true
		}
	}
	keys := make([]nk, 0, len(ports))
	for k := range ports {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].proto < keys[j].proto
	})
	ranges := func(m map[uint16]*stat) [][2]uint16 {
		var list []uint16
		for p := range m {
			list = append(list, p)
		}
		sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
		var out [][2]uint16
		for _, p := range list {
			if n := len(out); n > 0 && out[n-1][1]+1 == p {
				out[n-1][1] = p
			} else {
				out = append(out, [2]uint16{p, p})
			}
		}
		return out
	}
	var out []folded
	for i := 0; i < len(keys); i++ {
		k := keys[i]
		ms := []map[uint16]*stat{ports[k]}
		rs := ranges(ports[k])
		proto := k.proto
		// Same name and ports over TCP and UDP: one entry for both.
		if proto == "tcp" && i+1 < len(keys) && keys[i+1].name == k.name && keys[i+1].proto == "udp" &&
			reflect.DeepEqual(ranges(ports[keys[i+1]]), rs) {
			proto = ""
			ms = append(ms, ports[keys[i+1]])
			i++
		}
		for _, r := range rs {
			d := Dest{Name: k.name, PortLo: r[0], PortHi: r[1]}
			switch proto {
			case "tcp":
				d.Proto = ProtoTCP
			case "udp":
				d.Proto = ProtoUDP
			}
			var count uint64
			addrs := map[netip.Addr]bool{}
			for _, m := range ms {
				for port, s := range m {
					if port >= r[0] && port <= r[1] {
						count += s.count
						for a := range s.addrs {
							addrs[a] = true
						}
					}
				}
			}
			c := plural(count, "attempt") + " to 1 address it looked up"
			if len(addrs) > 1 {
				c = fmt.Sprintf("%s to %d addresses it looked up", plural(count, "attempt"), len(addrs))
			}
			out = append(out, folded{entry: d.String(), comment: c})
		}
	}
	return append(out, fold(plain)...)
}

// wildcards maps each name that has a sibling (another name directly below
// the same parent) to "*." and the parent, when the parent is at or below a
// registrable domain.
func wildcards(names map[netip.Addr][]string) map[string]string {
	children := map[string]map[string]bool{}
	for _, ns := range names {
		for _, n := range ns {
			_, parent, ok := strings.Cut(n, ".")
			if !ok {
				continue
			}
			if etld1, err := publicsuffix.EffectiveTLDPlusOne(parent); err != nil || len(etld1) > len(parent) {
				continue
			}
			if children[parent] == nil {
				children[parent] = map[string]bool{}
			}
			children[parent][n] = true
		}
	}
	out := map[string]string{}
	for parent, kids := range children {
		if len(kids) < 2 {
			continue
		}
		w := "*." + parent
		if _, err := ParseName(w); err != nil {
			continue
		}
		for n := range kids {
			out[n] = w
		}
	}
	return out
}

// lookupNote is the header's lines on names, or "" when no lookup was seen.
func lookupNote(rep LearnReport, opts LearnOptions) string {
	seen := false
	for _, e := range rep.Observed {
		seen = seen || len(e.Lookups) > 0
	}
	switch {
	case !seen:
		return ""
	case opts.FoldNames:
		return "Destinations a program looked up in DNS are allowed by name (names below one\ndomain folded into *.DOMAIN, --fold-names); the others by address."
	}
	return "Destinations a program looked up in DNS are allowed by name (--fold-names folds\nnames below one domain into *.DOMAIN); the others by address."
}

// LearnDNSSteerer is a backend whose DNS forwarder can see every program's
// lookups while a session runs (not only those of rules with name
// entries), so ObserveLookups is told them; such lookups bind nothing.
type LearnDNSSteerer interface {
	SetLearnDNS(on bool) error
}

// setLearnDNS turns the backend's learning steering on or off, if it has
// one. Without it a session learns addresses, never names.
func (m *Manager) setLearnDNS(on bool) {
	s, ok := m.cfg.Backend.(LearnDNSSteerer)
	if !ok {
		return
	}
	if err := s.SetLearnDNS(on); err != nil {
		m.log.Info("learning: lookups not seen by the dns forwarder; names are not learned", "on", on, "err", err)
	}
}
