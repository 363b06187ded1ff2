package engine

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
)

// mergeDests sums duplicates (from merged executables) and sorts.
func mergeDests(ds []LearnDest) []LearnDest {
	type key struct {
		a     netip.Addr
		port  uint16
		proto string
		dir   string
	}
	at := map[key]int{}
	var out []LearnDest
	for _, d := range ds {
		d.Addr = d.Addr.Unmap()
		k := key{d.Addr, d.Port, d.Proto, d.Direction}
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
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].Direction < out[j].Direction
	})
	return out
}

// inbound turns the peers a program accepted into "in" entries that keep
// it reachable on each local port it served: any peer, both families (the
// peers of one session are a sample of its clients), one entry per port
// and protocol. A local-only rule needs none for a port only local peers
// reached.
func inbound(ins []LearnDest, localOnly bool, hostNets []netip.Prefix) []folded {
	type pp struct {
		port  uint16
		proto string
	}
	type stat struct {
		count uint64
		peers map[netip.Addr]bool
		local bool
	}
	by := map[pp]*stat{}
	var keys []pp
	for _, d := range ins {
		if d.Proto != "tcp" && d.Proto != "udp" {
			continue
		}
		k := pp{d.Port, d.Proto}
		s := by[k]
		if s == nil {
			s = &stat{peers: map[netip.Addr]bool{}, local: true}
			by[k] = s
			keys = append(keys, k)
		}
		s.count += d.Count
		s.peers[d.Addr] = true
		s.local = s.local && IsLocal(d.Addr, hostNets)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].port != keys[j].port {
			return keys[i].port < keys[j].port
		}
		return keys[i].proto < keys[j].proto
	})
	var out []folded
	for _, k := range keys {
		s := by[k]
		if localOnly && s.local {
			continue
		}
		c := fmt.Sprintf("accepted %s from %s", plural(s.count, "time"), plural(uint64(len(s.peers)), "peer"))
		for _, any := range []string{"0.0.0.0/0", "::/0"} {
			out = append(out, folded{entry: fmt.Sprintf("%s port %d %s in", any, k.port, k.proto), comment: c})
		}
	}
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
