package darwin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/exewall/exewall/engine"
)

// logEntry is one packet pf logged: its struct pfloghdr (xnu's
// bsd/net/if_pflog.h) and the addresses of the packet that follows it.
type logEntry struct {
	Time    time.Time
	RuleNr  int    // rule number in the main ruleset
	Ruleset string // name (last path component) of the anchor whose rule matched; "" for the main ruleset
	SubNr   int    // rule number within Ruleset; -1 for the main ruleset
	Reason  uint8  // PFRES_*: 0 is a rule match
	UID     uint32 // owner of the socket, when HasUID
	HasUID  bool
	PID     uint32 // process that owns the socket, when HasPID
	HasPID  bool
	Action  string // pass, block, ...
	Dir     string // in or out
	Iface   string
	Proto   string // tcp, udp, icmp; "" for others
	Saddr   netip.Addr
	Sport   uint16
	Daddr   netip.Addr
	Dport   uint16 // 0 for ICMP
}

// struct pfloghdr, as xnu lays it out (64 bytes; its length field says
// 61, the offset of pad). rulenr and subrulenr are in network byte order;
// uid and pid are in the host's (little-endian on every Mac exewall runs
// on: Intel and Apple silicon).
const (
	pflogLen       = 0  // u_int8_t length
	pflogAF        = 1  // sa_family_t af
	pflogAction    = 2  // u_int8_t action
	pflogReason    = 3  // u_int8_t reason
	pflogIfname    = 4  // char ifname[IFNAMSIZ]
	pflogRuleset   = 20 // char ruleset[PFLOG_RULESET_NAME_SIZE]
	pflogRulenr    = 36 // u_int32_t rulenr
	pflogSubrulenr = 40 // u_int32_t subrulenr
	pflogUID       = 44 // uid_t uid
	pflogPID       = 48 // pid_t pid
	pflogDir       = 60 // u_int8_t dir
	pflogRealLen   = 61 // PFLOG_REAL_HDRLEN: offsetof(struct pfloghdr, pad)

	// pflogNameSize is PFLOG_RULESET_NAME_SIZE less its NUL: pflog keeps
	// 15 bytes of an anchor name.
	pflogNameSize = 15

	afInet  = 2  // AF_INET
	afInet6 = 30 // AF_INET6 on Darwin

	uidMax = 2147483647 // UID_MAX on Darwin: pf found no socket
	noPID  = 100000     // NO_PID (PID_MAX+1)
)

var pfActions = []string{"pass", "block", "scrub", "no-scrub", "nat", "no-nat", "binat", "no-binat", "rdr", "no-rdr", "synproxy-drop", "dummynet", "no-dummynet", "nat64", "no-nat64"}

// parsePflogPacket decodes one DLT_PFLOG packet: the header, then the IP
// packet at the header's length rounded up to 4 bytes (BPF_WORDALIGN).
func parsePflogPacket(b []byte, at time.Time) (logEntry, error) {
	e := logEntry{Time: at, SubNr: -1}
	if len(b) < pflogRealLen {
		return e, fmt.Errorf("pflog packet of %d bytes: shorter than its header", len(b))
	}
	hlen := int(b[pflogLen])
	if hlen < pflogRealLen {
		return e, fmt.Errorf("pflog header length %d, want at least %d", hlen, pflogRealLen)
	}
	if a := int(b[pflogAction]); a < len(pfActions) {
		e.Action = pfActions[a]
	} else {
		e.Action = fmt.Sprintf("action(%d)", a)
	}
	e.Reason = b[pflogReason]
	e.Iface = cString(b[pflogIfname:pflogRuleset])
	e.Ruleset = cString(b[pflogRuleset:pflogRulenr])
	e.RuleNr = int(int32(binary.BigEndian.Uint32(b[pflogRulenr:])))
	if sub := binary.BigEndian.Uint32(b[pflogSubrulenr:]); sub != 0xffffffff {
		e.SubNr = int(sub)
	}
	if uid := binary.LittleEndian.Uint32(b[pflogUID:]); uid != uidMax && uid != 0xffffffff {
		e.UID, e.HasUID = uid, true
	}
	if pid := binary.LittleEndian.Uint32(b[pflogPID:]); pid != noPID && pid != 0xffffffff && pid != 0 {
		e.PID, e.HasPID = pid, true
	}
	switch b[pflogDir] {
	case 1:
		e.Dir = "in"
	case 2:
		e.Dir = "out"
	default:
		e.Dir = "in/out"
	}
	off := (hlen + 3) &^ 3
	if off > len(b) {
		return e, errors.New("pflog packet truncated after its header")
	}
	af := b[pflogAF]
	if af != afInet && af != afInet6 {
		return e, fmt.Errorf("pflog packet of address family %d", af)
	}
	return e, e.parseIP(b[off:])
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseIP reads the addresses, protocol and ports of an IPv4 or IPv6
// packet; a packet cut short (snap length) keeps what was read.
func (e *logEntry) parseIP(p []byte) error {
	if len(p) < 1 {
		return errors.New("pflog packet without an IP header")
	}
	var proto uint8
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return errors.New("short IPv4 header")
		}
		ihl := int(p[0]&0x0f) * 4
		proto = p[9]
		e.Saddr = netip.AddrFrom4([4]byte(p[12:16]))
		e.Daddr = netip.AddrFrom4([4]byte(p[16:20]))
		if ihl >= 20 && ihl <= len(p) {
			l4 = p[ihl:]
		}
	case 6:
		if len(p) < 40 {
			return errors.New("short IPv6 header")
		}
		proto = p[6]
		e.Saddr = netip.AddrFrom16([16]byte(p[8:24]))
		e.Daddr = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return fmt.Errorf("IP version %d", p[0]>>4)
	}
	switch proto {
	case 6:
		e.Proto = "tcp"
	case 17:
		e.Proto = "udp"
	case 1, 58:
		e.Proto = "icmp"
		return nil
	default:
		return nil
	}
	if len(l4) >= 4 {
		e.Sport = binary.BigEndian.Uint16(l4[0:])
		e.Dport = binary.BigEndian.Uint16(l4[2:])
	}
	return nil
}

// Violation maps an entry logged by a rule of the anchor named anchorName
// to the engine's model: a block is a denial, a (logged) pass an audited
// would-be denial. lookup gives the label of the anchor's rule number; when
// it has none the rule is left empty. pflog carries no comm or exe; the uid
// and pid are those of the socket pf looked up. ok is false for other
// anchors' rules, inbound packets and anything else.
func (e logEntry) Violation(anchorName string, lookup func(nr int) (ruleLabel, bool)) (engine.Violation, bool) {
	if len(anchorName) > pflogNameSize {
		anchorName = anchorName[:pflogNameSize]
	}
	if e.SubNr < 0 || e.Ruleset != anchorName || e.Dir != "out" || !e.Daddr.IsValid() {
		return engine.Violation{}, false
	}
	v := engine.Violation{Time: e.Time, Proto: e.Proto, Daddr: e.Daddr.Unmap(), Dport: e.Dport}
	v.Family = engine.FamilyOf(v.Daddr)
	switch e.Action {
	case "block":
		v.Verdict = engine.VerdictDeny
	case "pass":
		v.Verdict = engine.VerdictAudit
	default:
		return engine.Violation{}, false
	}
	if lookup != nil {
		if l, ok := lookup(e.SubNr); ok {
			if l.Verdict == engine.VerdictAllow {
				return engine.Violation{}, false
			}
			v.Rule, v.Verdict = l.Rule, l.Verdict
		}
	}
	if e.HasUID {
		v.UID = e.UID
	}
	if e.HasPID {
		v.PID = e.PID
	}
	if v.Proto == "icmp" {
		v.Dport = 0
	}
	return v, true
}

// dltPflog is the pcap link type of pflog interfaces (LINKTYPE_PFLOG).
const dltPflog = 117

// readPflog reads a pcap stream of pflog0 (tcpdump with tcpdumpArgs) from
// r until it ends or ctx is done and sends the violations of the anchor
// named anchorName to out. Packets that do not decode are skipped.
func readPflog(ctx context.Context, r io.Reader, anchorName string, lookup func(nr int) (ruleLabel, bool), out chan<- engine.Violation) error {
	br := bufio.NewReader(r)
	var gh [24]byte
	if _, err := io.ReadFull(br, gh[:]); err != nil {
		return fmt.Errorf("read pcap header: %w", err)
	}
	var order binary.ByteOrder
	nano := false
	switch {
	case binary.LittleEndian.Uint32(gh[:]) == 0xa1b2c3d4:
		order = binary.LittleEndian
	case binary.BigEndian.Uint32(gh[:]) == 0xa1b2c3d4:
		order = binary.BigEndian
	case binary.LittleEndian.Uint32(gh[:]) == 0xa1b23c4d:
		order, nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(gh[:]) == 0xa1b23c4d:
		order, nano = binary.BigEndian, true
	default:
		return fmt.Errorf("not a pcap stream (magic %x)", gh[:4])
	}
	if lt := order.Uint32(gh[20:]) & 0x0fffffff; lt != dltPflog {
		return fmt.Errorf("pcap link type %d, want pflog (%d)", lt, dltPflog)
	}
	var rh [16]byte
	buf := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(br, rh[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read pcap record: %w", err)
		}
		n := order.Uint32(rh[8:])
		if n > 1<<20 {
			return fmt.Errorf("pcap record of %d bytes", n)
		}
		buf = buf[:0]
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("read pcap record: %w", err)
		}
		sub := int64(order.Uint32(rh[4:]))
		if !nano {
			sub *= 1000
		}
		at := time.Unix(int64(order.Uint32(rh[0:])), sub)
		e, err := parsePflogPacket(buf, at)
		if err != nil {
			continue
		}
		v, ok := e.Violation(anchorName, lookup)
		if !ok {
			continue
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
