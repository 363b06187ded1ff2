package engine_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestFloodIsFolded is issue 13 item 9: one program sending to a new
// destination each time (the kernel cannot aggregate those) must not wash
// the other programs' events, nor its own first one, out of the window; its
// events beyond a rate are folded into summaries, and status says a flood is
// being folded.
func TestFloodIsFolded(t *testing.T) {
	f := newFixture(t, "", func(c *engine.ManagerConfig) { c.Window = 1000 })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.m.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	sub, unsub := f.m.Subscribe()
	defer unsub()

	base := time.Now()
	emit := func(exe, rule string, i int) {
		f.b.Emit(engine.Violation{Time: base.Add(time.Duration(i) * time.Microsecond), Exe: exe, Rule: rule, PID: 7,
			Verdict: engine.VerdictDeny, Count: 1, Daddr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Dport: 53})
	}
	emit("/usr/bin/quiet", "q", 0)
	emit("/usr/bin/other", "o", 1)
	const flood = 100000
	got := 0
	for i := 0; i < flood; i++ {
		emit("/tmp/flooder", "f", 2+i)
		// Drain the subscriber so it is not dropped for lagging.
		for drained := false; !drained; {
			select {
			case <-sub:
				got++
			default:
				drained = true
			}
		}
	}
	emit("/usr/bin/late", "l", flood+2)
	var st engine.Status
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st, _ = f.m.Status(ctx)
		if st.ViolationsFlooding > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.ViolationsFlooding != 1 || st.ViolationsFolded == 0 {
		t.Errorf("status during the flood: flooding %d, folded %d; want 1 program and some events folded", st.ViolationsFlooding, st.ViolationsFolded)
	}
	// Wait for the summary of the folded second.
	var summary *engine.Violation
	deadline = time.Now().Add(5 * time.Second)
	for summary == nil && time.Now().Before(deadline) {
		for _, v := range f.m.Violations(time.Time{}) {
			if v.Folded > 0 {
				summary = &v
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	vs := f.m.Violations(time.Time{})
	seen := map[string]bool{}
	var events, folded uint64
	for _, v := range vs {
		seen[v.Exe] = true
		if v.Exe == "/tmp/flooder" {
			events++
			folded += v.Folded
		}
	}
	for _, exe := range []string{"/usr/bin/quiet", "/usr/bin/other", "/tmp/flooder", "/usr/bin/late"} {
		if !seen[exe] {
			t.Errorf("the flood washed %s's event out of the window (%d events kept)", exe, len(vs))
		}
	}
	if summary == nil {
		t.Fatalf("no summary of the folded events in the window")
	}
	if events >= flood/2 {
		t.Errorf("the flooder still has %d events in the window: not folded", events)
	}
	t.Logf("window %d events; flooder: %d entries standing for %d folded events; summary %+v", len(vs), events, folded, *summary)
}
