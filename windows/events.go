package windows

import (
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
)

// drop is a WFP classify-drop net event, as the adapter receives it by
// subscription (internal/fwpm). WFP records no process id for it; it does
// record the user's SID.
type drop struct {
	Time     time.Time
	Proto    uint8
	Remote   netip.AddrPort
	Local    netip.AddrPort
	AppID    string // NT device path of the executable, lower case
	UserSID  string // the process token's user, when WFP recorded it
	FilterID uint64 // run-time id of the filter that dropped it
	Outbound bool
}

// classify turns a drop on one of exewall's block filters into a violation.
// ok is false for a filter that does not block (it cannot have dropped
// anything). appPath turns an app ID into a readable path for the default's
// drops, whose filter names no executable.
func classify(d drop, m filterMeta, appPath func(string) string) (v engine.Violation, ok bool) {
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
	dir := engine.DirOut
	if m.In {
		// Inbound: the peer is Remote, the port is the program's own.
		dir, port = engine.DirIn, d.Local.Port()
		if proto == "icmp" {
			port = 0
		}
	}
	v = engine.Violation{
		Time:      d.Time,
		Exe:       exe,
		Comm:      exeBase(exe),
		Rule:      m.Rule,
		Verdict:   engine.VerdictDeny,
		Proto:     proto,
		Daddr:     daddr,
		Dport:     port,
		Direction: dir.String(),
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
