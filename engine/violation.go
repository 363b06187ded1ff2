package engine

import (
	"net/netip"
	"time"
)

// Verdict of a reported attempt.
type Verdict string

const (
	VerdictAllow Verdict = "allow"
	VerdictDeny  Verdict = "deny"
	VerdictAudit Verdict = "audit" // would have been denied; reported, not enforced
)

// Violation is one denied or audited connection attempt, as `exewall
// violations --json` prints it. Fields a kernel does not report (WFP and pf
// carry no pid) are left zero rather than guessed.
type Violation struct {
	Time    time.Time  `json:"time"`
	PID     uint32     `json:"pid"`
	UID     uint32     `json:"uid"`
	Comm    string     `json:"comm"`
	Exe     string     `json:"exe"`
	Rule    string     `json:"rule"`
	Verdict Verdict    `json:"verdict"`
	Proto   string     `json:"proto"`  // tcp | udp | icmp
	Family  string     `json:"family"` // ipv4 | ipv6
	Daddr   netip.Addr `json:"daddr"`  // IPv4-mapped shown as IPv4
	Dport   uint16     `json:"dport"`
	// Count is how many attempts this event stands for: repeats of the same
	// attempt (process, rule, destination) within a second are counted, not
	// reported one by one, so a storm cannot drown the pipeline.
	Count uint64 `json:"count"`
	// Folded is set on a summary: that many events of one flooding program
	// (within about a second) were folded into this one, so one program
	// cannot wash everyone else's events out of the window and the log.
	// The destination and time are the last folded event's.
	Folded uint64 `json:"folded,omitempty"`
	// Call is the system call judged, where the backend knows it: "connect",
	// "send" (a datagram sent with a destination address) or "socket" (a
	// socket kind refused at creation: there is no destination yet).
	Call string `json:"call,omitempty"`
	// Name is the DNS name of the name entry involved, when one was: the
	// name the address was bound to by a lookup of the rule's program (an
	// address answered for a name the rule denies), "" otherwise.
	Name string `json:"name,omitempty"`
	// Direction is "out" for what the program opened or sent, "in" for
	// what it accepted or received: then Daddr is the remote peer and
	// Dport the local port, and PID, UID and Comm are the socket
	// creator's. Backends that judge outbound only leave it empty; the
	// Manager reports that as "out".
	Direction string `json:"direction"`
}

// Inbound reports whether the attempt was a connection or datagram the
// program received.
func (v Violation) Inbound() bool { return v.Direction == DirIn.String() }

// Calls a Violation may name.
const (
	CallConnect = "connect"
	CallSend    = "send"
	CallSocket  = "socket"
)

// ConnectOnly reports an attempt that sent nothing: a UDP socket connect()ed
// to the destination. glibc's getaddrinfo connects one to every candidate
// address to sort them and sends nothing; a program that does send later
// sends with no further check (connected sends bypass the hooks), so the
// connect is judged, but it proves no datagram went out.
func (v Violation) ConnectOnly() bool {
	return !v.Inbound() && v.Proto == "udp" && v.Call == CallConnect
}

// FamilyOf names the address family an address is judged as: IPv4-mapped
// IPv6 addresses are IPv4.
func FamilyOf(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}
