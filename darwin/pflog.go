package darwin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/exewall/exewall/engine"
)

// TcpdumpArgs reads pflog as ParsePflog expects: numeric (-n), with the
// pflog header (-e: rule, action, direction, interface), line-buffered (-l).
// -ttt prints the time since the previous line, so a line's time is when it
// was read.
var TcpdumpArgs = []string{"-n", "-e", "-ttt", "-l", "-i", "pflog0"}

// LogEntry is one line of `tcpdump -n -e -ttt -l -i pflog0`, as tcpdump's
// pflog printer writes it:
//
//	00:00:00.000000 rule 4.exewall.12/0(match) [uid 501]: block out on en0: 192.168.1.10.52144 > 203.0.113.5.443: Flags [S], seq 1, win 65535, length 0
//
// "rule 4.exewall.12" is rule 4 of the main ruleset (the `anchor
// "com.apple/*"` rule), which led into the anchor named exewall, where rule
// 12 matched; a rule of the main ruleset itself prints as "rule 4/". The
// "[uid N]" part appears only when pf looked the socket up and tcpdump is
// recent enough to print it.
type LogEntry struct {
	Time    time.Time
	RuleNr  int    // rule number in the main ruleset
	Ruleset string // name (last path component) of the anchor whose rule matched; "" for the main ruleset
	SubNr   int    // rule number within Ruleset; -1 for the main ruleset
	Reason  string // e.g. "0(match)"
	UID     uint32 // owner of the socket, when HasUID
	HasUID  bool
	Action  string // pass, block, ...
	Dir     string // in or out
	Iface   string
	Proto   string // tcp, udp, icmp; "" when tcpdump's text does not tell
	Saddr   netip.Addr
	Sport   uint16
	Daddr   netip.Addr
	Dport   uint16 // 0 for ICMP
}

var headerRE = regexp.MustCompile(`^(\S*?)(?: \[uid (\d+)\])?(?: \[ridentifier \d+\])?:? ([a-z][a-z0-9-]*) (in|out|in/out) on (\S+?): (.*)$`)

// ParsePflog parses one line of tcpdump's pflog output. now stands for the
// line's time unless it carries an absolute one (-tttt).
func ParsePflog(line string, now time.Time) (LogEntry, error) {
	e := LogEntry{Time: now, SubNr: -1}
	i := strings.Index(line, "rule ")
	if i < 0 {
		return e, fmt.Errorf("not a pflog line: %q", line)
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", strings.TrimSpace(line[:i]), time.Local); err == nil {
		e.Time = t
	}
	rest := line[i+len("rule "):]
	spec, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return e, fmt.Errorf("pflog line without rule number: %q", line)
	}
	var err error
	if dot := strings.IndexByte(spec, '.'); dot < 0 {
		if e.RuleNr, err = strconv.Atoi(spec); err != nil {
			return e, fmt.Errorf("bad rule number %q in pflog line", spec)
		}
	} else {
		// rule N.<ruleset>.M: the ruleset name may itself hold dots.
		last := strings.LastIndexByte(spec, '.')
		if e.RuleNr, err = strconv.Atoi(spec[:dot]); err != nil {
			return e, fmt.Errorf("bad rule number %q in pflog line", spec)
		}
		if e.SubNr, err = strconv.Atoi(spec[last+1:]); err != nil || last == dot {
			return e, fmt.Errorf("bad rule number %q in pflog line", spec)
		}
		e.Ruleset = spec[dot+1 : last]
	}
	m := headerRE.FindStringSubmatch(rest)
	if m == nil {
		return e, fmt.Errorf("unrecognised pflog header in %q", line)
	}
	e.Reason, e.Action, e.Dir, e.Iface = m[1], m[3], m[4], m[5]
	if m[2] != "" {
		uid, err := strconv.ParseUint(m[2], 10, 32)
		if err != nil {
			return e, fmt.Errorf("bad uid %q in pflog line", m[2])
		}
		e.UID, e.HasUID = uint32(uid), true
	}
	if err := e.parsePacket(m[6]); err != nil {
		return e, fmt.Errorf("%w in %q", err, line)
	}
	return e, nil
}

// parsePacket reads "src > dst: payload"; tcpdump writes an address and
// port as addr.port and leaves the port off for ICMP.
func (e *LogEntry) parsePacket(s string) error {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "IP6 "), "IP ")
	src, rest, ok := strings.Cut(s, " > ")
	if !ok {
		return fmt.Errorf("no addresses")
	}
	dst, payload, ok := strings.Cut(rest, ": ")
	if !ok {
		dst, ok = strings.CutSuffix(rest, ":")
		if !ok {
			return fmt.Errorf("no addresses")
		}
	}
	var sp, dp bool
	var err error
	if e.Saddr, e.Sport, sp, err = hostPort(src); err != nil {
		return err
	}
	if e.Daddr, e.Dport, dp, err = hostPort(dst); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(payload, "Flags ["), strings.HasPrefix(payload, "tcp"):
		e.Proto = "tcp"
	case strings.HasPrefix(payload, "ICMP"):
		e.Proto = "icmp"
	case strings.HasPrefix(payload, "UDP"), sp && dp:
		// Other payloads with ports are tcpdump's decoders of UDP
		// services (DNS, NTP, QUIC...): TCP always starts with its flags.
		e.Proto = "udp"
	}
	return nil
}

func hostPort(s string) (netip.Addr, uint16, bool, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, 0, false, nil
	}
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return netip.Addr{}, 0, false, fmt.Errorf("bad address %q", s)
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil {
		return netip.Addr{}, 0, false, fmt.Errorf("bad address %q", s)
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return netip.Addr{}, 0, false, fmt.Errorf("bad port in %q", s)
	}
	return a, uint16(p), true, nil
}

// pflogNameSize is PFLOG_RULESET_NAME_SIZE: pflog keeps 15 bytes of an
// anchor name.
const pflogNameSize = 15

// Violation maps an entry logged by a rule of the anchor named anchorName
// to the engine's model: a block is a denial, a (logged) pass an audited
// would-be denial. lookup gives the label of the anchor's rule number; when
// it has none the rule is left empty. pflog carries no pid, comm or exe,
// and a uid only with "[uid N]": what it does not say is left zero. ok is
// false for other anchors' rules, inbound packets and anything else.
func (e LogEntry) Violation(anchorName string, lookup func(nr int) (Label, bool)) (engine.Violation, bool) {
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
	if v.Proto == "icmp" {
		v.Dport = 0
	}
	return v, true
}

// ReadPflog reads tcpdump's pflog lines from r until it ends or ctx is done
// and sends the violations of the anchor named anchorName to out. Lines
// that are not pflog entries (tcpdump's banner, warnings) are skipped.
func ReadPflog(ctx context.Context, r io.Reader, anchorName string, lookup func(nr int) (Label, bool), now func() time.Time, out chan<- engine.Violation) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		e, err := ParsePflog(sc.Text(), now())
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
	return sc.Err()
}
