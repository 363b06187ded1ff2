//go:build linux

package linux

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/exewall/exewall/engine"
)

// Limits of the datapath, mirrored from bpf/exewall.h.
const (
	maxRules       = 1 << 17
	maxDestEntries = 16
	maxPrefixLens  = 8
	genBit         = 1 << 31
)

// Kernel enum values, mirrored from bpf/exewall.h.
const (
	verdictAllow = 1
	verdictDeny  = 2
	verdictAudit = 3
)

// compiled is one policy generation's map contents, entry by entry: what
// a scan of the maps finds, and the flat view of a generation.
type compiled struct {
	config  datapathConfig
	exe     map[datapathExeKey]datapathRule
	cgroups map[datapathIdKey]datapathRule
	uids    map[datapathIdKey]datapathRule
	gids    map[datapathIdKey]datapathRule
	dests   map[datapathDestKey]datapathDestVal
	binds   map[datapathBindKey]datapathBindVal // DNS name bindings -> name node (dns_gen.go)
	paths   map[datapathPathKey]datapathRule
	named   map[datapathNameKey]datapathRule // exe rules' symlink names (linux/names.go)
}

// identities is what compile needs from the machine, resolved beforehand.
type identities struct {
	// exe is by exe path: its identities (several while an old inode
	// still runs), where the file lives (for the exec hook) and its
	// symlink names (names.go), in exe.cur.
	exe     exeIDs
	cgroups map[string]uint64 // by cleaned cgroup path
	uids    map[string]uint32
	gids    map[string]uint32
	// current says every exe identity here was resolved (or remembered by
	// the watcher) at the watcher's epoch and no path is polled: while the
	// epoch stays, they all still hold (incremental.go).
	current bool
	epoch   uint64
	// owned says these maps are the backend's own, patched in place by an
	// incremental apply; a full resolution's are shared with the memo.
	owned bool
}

// compileDests writes one LPM node per distinct prefix of the rule. Each node
// lists its own entries and then those of every shorter prefix containing
// it, in the engine's order, so one longest-prefix lookup finds every entry
// that can match and the first match decides (engine.OrderedDests).
func compileDests(r *engine.Rule, ruleID uint32, out map[datapathDestKey]datapathDestVal) error {
	ordered := engine.OrderedDests(r) // longest prefix first
	prefixes := map[netip.Prefix]bool{}
	for _, d := range ordered {
		if !d.IsName() { // names: bindings and their name nodes (dns_gen.go)
			prefixes[d.Prefix] = true
		}
	}
	keys := make([]netip.Prefix, 0, len(prefixes))
	for p := range prefixes {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, node := range keys {
		var val datapathDestVal
		for _, d := range ordered {
			if d.IsName() || d.Prefix.Addr().Is4() != node.Addr().Is4() || d.Prefix.Bits() > node.Bits() || !d.Prefix.Contains(node.Addr()) {
				continue
			}
			if val.Count == maxDestEntries {
				return fmt.Errorf("rule %s: more than %d destination entries cover %s; merge some", r.Name, maxDestEntries, node)
			}
			e := datapathDestEntry{PortLo: d.PortLo, PortHi: d.PortHi, Proto: uint8(d.Proto), Verdict: verdictAllow, Dir: uint8(d.Dir)}
			if d.AnyPort() {
				e.PortLo, e.PortHi = 0, 0xffff
			}
			if d.Verdict == engine.VerdictDeny {
				e.Verdict = verdictDeny
			}
			val.E[val.Count] = e
			val.Count++
		}
		out[destKey(ruleID, node)] = val
	}
	return nil
}

func destKey(ruleID uint32, p netip.Prefix) datapathDestKey {
	fam, bits, addr := famAddr(p)
	return datapathDestKey{Rule: ruleID, Family: uint8(fam), Plen: uint8(bits), Addr: addr}
}

// prefixLens records the rule's distinct prefix lengths per family, longest
// first: the datapath tries one exact lookup per length.
func prefixLens(r *engine.Rule, dr *datapathRule) error {
	var v4, v6 []uint8
	for _, d := range engine.OrderedDests(r) {
		if d.IsName() { // bindings are looked up in name_binds (dns_gen.go)
			continue
		}
		bits := uint8(d.Prefix.Bits())
		if d.Prefix.Addr().Is4() {
			if !slices.Contains(v4, bits) {
				v4 = append(v4, bits)
			}
		} else if !slices.Contains(v6, bits) {
			v6 = append(v6, bits)
		}
	}
	if len(v4) > maxPrefixLens || len(v6) > maxPrefixLens {
		return fmt.Errorf("rule %s: its destinations use more than %d different prefix lengths per address family; merge some", r.Name, maxPrefixLens)
	}
	slices.SortFunc(v4, func(a, b uint8) int { return int(b) - int(a) })
	slices.SortFunc(v6, func(a, b uint8) int { return int(b) - int(a) })
	dr.Nlens4, dr.Nlens6 = uint8(len(v4)), uint8(len(v6))
	copy(dr.Lens4[:], v4)
	copy(dr.Lens6[:], v6)
	return nil
}

func localKey(p netip.Prefix) datapathLocalKey {
	fam, bits, addr := famAddr(p)
	return datapathLocalKey{Prefixlen: 32 + uint32(bits), Family: htonl(fam), Addr: addr}
}

// famAddr lays an address out as the datapath does: IPv4 in the first four
// bytes with family 4, IPv6 in all sixteen with family 6.
func famAddr(p netip.Prefix) (fam uint32, bits int, addr [16]byte) {
	p = p.Masked()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		copy(addr[:], a[:])
		return 4, p.Bits(), addr
	}
	return 6, p.Bits(), p.Addr().As16()
}

// htonl stores v so that its bytes in memory are big endian, which is what
// makes rule and family a bit prefix of an LPM key.
func htonl(v uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return binary.NativeEndian.Uint32(b[:])
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// place is where an executable lives: its parent directory's identity and
// its name, as the exec hook reads them from the dentry.
type place struct {
	dir  engine.FileID
	name string
}

// maxName mirrors MAX_NAME: longer names are not followed at exec.
const maxName = 64

func pathKey(pl place, gen uint32) datapathPathKey {
	k := datapathPathKey{Dir: datapathFileId{Dev: pl.dir.Dev, Igen: pl.dir.Gen, Ino: pl.dir.Ino}, Gen: gen}
	copy(k.Name[:], toInt8(pl.name))
	return k
}
