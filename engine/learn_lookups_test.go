package engine_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// TestLearningLookups: lookups reported during a session are kept per
// executable and name the learned entries; outside a session they are
// ignored.
func TestLearningLookups(t *testing.T) {
	f := newFixture(t, learnPolicy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	a := netip.MustParseAddr("140.82.112.5")
	f.m.ObserveLookups("/usr/bin/wget", []engine.LearnLookup{{Name: "before.example", Addr: a}}) // no session: ignored
	if _, err := f.m.StartLearning(ctx, time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	f.m.ObserveLookups("/usr/bin/wget", []engine.LearnLookup{{Name: "API.GitHub.com.", Addr: netip.MustParseAddr("::ffff:140.82.112.5")},
		{Name: "bad name!", Addr: a}})
	f.b.Emit(engine.Violation{Time: time.Now(), Exe: "/usr/bin/wget", Comm: "wget", Verdict: engine.VerdictAudit, Proto: "tcp", Daddr: a, Dport: 443})
	waitFor(t, "1 attempt", func() bool { r, _ := f.m.LearnStatus(); return r.Events == 1 })
	r, err := f.m.StopLearning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Observed) != 1 || len(r.Observed[0].Lookups) != 1 || r.Observed[0].Lookups[0] != (engine.LearnLookup{Name: "api.github.com", Addr: a}) {
		t.Fatalf("observed %+v", r.Observed)
	}
	if !strings.Contains(r.Policy, "- api.github.com port 443 tcp") {
		t.Errorf("learned policy:\n%s", r.Policy)
	}
}
