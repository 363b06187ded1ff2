package windows

import (
	"net/netip"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
)

// Drop is a WFP classify-drop net event, as the adapter reads it from
// wf.Session.DropEvents. WFP records no process id or user for it.
type Drop struct {
	Time     time.Time
	Proto    uint8
	Remote   netip.AddrPort
	AppID    string // NT device path of the executable, lower case
	FilterID uint64 // run-time id of the filter that dropped it
}

type dropKey struct {
	time     int64
	filterID uint64
	proto    uint8
	remote   netip.AddrPort
	appID    string
}

func keyOf(d Drop) dropKey {
	return dropKey{d.Time.UnixNano(), d.FilterID, d.Proto, d.Remote, d.AppID}
}

// dropCursor remembers which events were already reported. WFP's event
// enumeration returns the whole retained buffer every time, so each poll
// reports only what is newer than the last event seen (and, at that last
// timestamp, what was not seen yet).
type dropCursor struct {
	last time.Time
	seen map[dropKey]bool // events at exactly last
}

func newDropCursor(start time.Time) *dropCursor {
	return &dropCursor{last: start, seen: map[dropKey]bool{}}
}

// fresh returns the events of ds not reported before, oldest first.
func (c *dropCursor) fresh(ds []Drop) []Drop {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Time.Before(ds[j].Time) })
	var out []Drop
	for _, d := range ds {
		switch {
		case d.Time.Before(c.last):
			continue
		case d.Time.Equal(c.last):
			if c.seen[keyOf(d)] {
				continue
			}
		default:
			c.last = d.Time
			c.seen = map[dropKey]bool{}
		}
		c.seen[keyOf(d)] = true
		out = append(out, d)
	}
	return out
}

// classify turns a drop on one of exewall's block filters into a violation.
// ok is false for a filter that does not block (it cannot have dropped
// anything). appPath turns an app ID into a readable path for the default's
// drops, whose filter names no executable.
func classify(d Drop, m filterMeta, appPath func(string) string) (v engine.Violation, ok bool) {
	if !m.Block || m.Audit {
		return v, false
	}
	exe := m.Exe
	if exe == "" && d.AppID != "" {
		exe = appPath(d.AppID)
	}
	daddr := d.Remote.Addr().Unmap()
	port := d.Remote.Port()
	proto := protoName(d.Proto)
	if proto == "icmp" {
		port = 0 // WFP's remote "port" of ICMP is its code
	}
	v = engine.Violation{
		Time:    d.Time,
		Exe:     exe,
		Comm:    exeBase(exe),
		Rule:    m.Rule,
		Verdict: engine.VerdictDeny,
		Proto:   proto,
		Daddr:   daddr,
		Dport:   port,
	}
	if daddr.IsValid() {
		v.Family = engine.FamilyOf(daddr)
	}
	return v, true
}

// exeBase is the image name of an executable path, which is what Windows
// tools show as the process name.
func exeBase(p string) string {
	if p == "" {
		return ""
	}
	return path.Base(strings.ReplaceAll(p, `\`, "/"))
}
