package violations

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/exewall/exewall/cmd/exewall/internal/commands"
	"github.com/exewall/exewall/engine"
)

var header = []string{"TIME", "VERDICT", "RULE", "PID", "UID", "COMM", "EXE", "DESTINATION"}

// followWidths are the columns' widths when following: rows are printed one
// at a time, so they cannot be aligned on the widest value seen.
var followWidths = []int{23, 7, 12, 7, 5, 15, 28, 0}

// cells are the table columns of one violation.
func cells(v engine.Violation) []string {
	rule := v.Rule
	if rule == "" {
		rule = "(default)"
	}
	return []string{v.Time.Local().Format("2006-01-02 15:04:05.000"), string(v.Verdict), commands.Q(rule),
		fmt.Sprint(v.PID), fmt.Sprint(v.UID), commands.Q(v.Comm), commands.Q(v.Exe), destination(v)}
}

// destination is what the attempt tried to reach, as a user reads it.
func destination(v engine.Violation) string {
	var dest string
	switch {
	case v.Call == engine.CallSocket || (v.Proto == "icmp" && !v.Daddr.IsValid()) || (v.Proto == "icmp" && v.Daddr.IsUnspecified()):
		// Refused at socket creation (ping, raw sockets): no destination yet.
		dest = v.Proto + " socket"
	case v.Inbound() && v.Proto == "icmp":
		dest = fmt.Sprintf("in: %s from %s", v.Proto, v.Daddr)
	case v.Inbound():
		// Accepted or received: the peer, and the program's own port.
		dest = fmt.Sprintf("in: %s from %s to local port %d", v.Proto, v.Daddr, v.Dport)
	case v.Proto == "icmp":
		dest = fmt.Sprintf("%s %s", v.Proto, v.Daddr)
	default:
		dest = fmt.Sprintf("%s %s", v.Proto, netJoin(v.Daddr.String(), v.Dport))
	}
	if v.Name != "" {
		dest += " (name " + commands.Q(v.Name) + ")"
	}
	if v.ConnectOnly() {
		if v.Verdict == engine.VerdictDeny {
			dest += " (connect, nothing sent)"
		} else {
			dest += " (connect)"
		}
	}
	if v.Count > 1 {
		dest += fmt.Sprintf(" (x%d)", v.Count)
	}
	if v.Folded > 0 {
		dest += fmt.Sprintf(" [flood: %d events folded, last shown]", v.Folded)
	}
	return dest
}

// table prints rows: aligned on all of them when the listing is complete,
// in fixed-width columns when following. The header comes with the first
// row, or at the end of a listing that succeeded: a failed listing (no
// daemon) prints only its error.
type table struct {
	w       io.Writer
	tw      *tabwriter.Writer
	follow  bool
	started bool
}

func newTable(w io.Writer, follow bool) *table {
	t := &table{w: w, follow: follow}
	if !follow {
		t.tw = commands.Table(w)
	}
	return t
}

func (t *table) line(c []string) error {
	if t.tw != nil {
		_, err := fmt.Fprintln(t.tw, strings.Join(c, "\t"))
		return err
	}
	var b strings.Builder
	for i, s := range c {
		if i > 0 {
			b.WriteString("  ")
		}
		if i < len(c)-1 {
			fmt.Fprintf(&b, "%-*s", followWidths[i], s)
		} else {
			b.WriteString(s)
		}
	}
	_, err := fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
	return err
}

func (t *table) print(v engine.Violation) error {
	if !t.started {
		t.started = true
		if err := t.line(header); err != nil {
			return err
		}
	}
	return t.line(cells(v))
}

// end finishes the listing; err is how it ended.
func (t *table) end(err error) {
	if err == nil && !t.started {
		t.started = true
		t.line(header)
	}
	if t.tw != nil {
		t.tw.Flush()
	}
}
