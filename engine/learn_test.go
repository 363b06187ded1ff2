package engine_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

const learnPolicy = `# mine
default: local-only
mode: enforce
rules:
  - name: curl
    exe: /usr/bin/curl
    action: deny
`

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLearningSessionRecordsAndRestores(t *testing.T) {
	f := newFixture(t, learnPolicy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	before := f.m.Policy()
	src, _ := os.ReadFile(f.path)

	if _, err := f.m.StartLearning(ctx, time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := f.b.InForce(); !reflect.DeepEqual(engine.ViewPolicy(got), engine.ViewPolicy(engine.LearningPolicy())) {
		t.Fatalf("in force during learning: %+v", got)
	}
	// Edits and a second session are refused; the file is never touched.
	if err := f.m.SetMode(ctx, engine.ModeAudit); !errors.Is(err, engine.ErrLearning) {
		t.Fatalf("edit during learning: %v", err)
	}
	if _, err := f.m.StartLearning(ctx, time.Hour, time.Minute); !errors.Is(err, engine.ErrLearning) {
		t.Fatalf("second session: %v", err)
	}
	now := time.Now()
	a := netip.MustParseAddr("198.51.100.7")
	f.b.Emit(engine.Violation{Time: now, Exe: "/usr/bin/wget", Comm: "wget", Verdict: engine.VerdictAudit, Proto: "tcp", Daddr: a, Dport: 443})
	// An event standing for two repeats of one attempt counts twice.
	f.b.Emit(engine.Violation{Time: now, Exe: "/usr/bin/wget", Comm: "wget", Verdict: engine.VerdictAudit, Proto: "tcp", Daddr: a, Dport: 443, Count: 2})
	f.b.Emit(engine.Violation{Time: now, Exe: "/usr/bin/wget", Comm: "wget", Verdict: engine.VerdictAudit, Proto: "udp", Daddr: netip.MustParseAddr("::ffff:10.0.0.1"), Dport: 53})
	f.b.Emit(engine.Violation{Time: now, Comm: "gone", Verdict: engine.VerdictAudit, Proto: "tcp", Daddr: a, Dport: 80})
	waitFor(t, "5 attempts", func() bool { r, _ := f.m.LearnStatus(); return r.Events == 5 })

	r, err := f.m.StopLearning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.b.InForce(), before) || !reflect.DeepEqual(f.m.Policy(), before) {
		t.Fatalf("previous policy not back: %+v", f.b.InForce())
	}
	if after, _ := os.ReadFile(f.path); string(after) != string(src) {
		t.Fatalf("policy file changed:\n%s", after)
	}
	if r.Active || r.Exes != 1 || r.Unattributed["gone"] != 1 || r.Previous.Default != "local-only" || len(r.Previous.Rules) != 1 {
		t.Fatalf("report: %+v", r)
	}
	wget := r.Observed[0]
	if wget.Exe != "/usr/bin/wget" || wget.Events != 4 || len(wget.Dests) != 2 {
		t.Fatalf("observed: %+v", wget)
	}
	if d := wget.Dests[0]; d.Addr != netip.MustParseAddr("10.0.0.1") || d.Proto != "udp" || d.Count != 1 {
		t.Fatalf("mapped address not unmapped, or order: %+v", d)
	}
	if d := wget.Dests[1]; d.Addr != a || d.Port != 443 || d.Count != 3 {
		t.Fatalf("dest: %+v", d)
	}
	if _, err := f.m.LearnStatus(); !errors.Is(err, engine.ErrNoLearning) {
		t.Fatalf("session still there: %v", err)
	}
	if err := f.m.SetMode(ctx, engine.ModeAudit); err != nil {
		t.Fatalf("edit after learning: %v", err)
	}
}

func TestLearningEndsByItself(t *testing.T) {
	for _, tc := range []struct {
		name            string
		duration, lease time.Duration
		renew           bool
		reason          string
	}{
		{"deadline", 50 * time.Millisecond, time.Minute, false, "the duration is up"},
		{"lease", 0, 80 * time.Millisecond, false, "lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, learnPolicy)
			before := f.m.Policy()
			if _, err := f.m.StartLearning(context.Background(), tc.duration, tc.lease); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the session to end", func() bool {
				return reflect.DeepEqual(f.b.InForce(), before)
			})
			r, err := f.m.StopLearning(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Active || !containsText(r.EndReason, tc.reason) {
				t.Fatalf("report: %+v", r)
			}
		})
	}
}

func TestLearningLeaseRenewed(t *testing.T) {
	f := newFixture(t, learnPolicy)
	if _, err := f.m.StartLearning(context.Background(), 0, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		time.Sleep(40 * time.Millisecond)
		r, err := f.m.LearnStatus()
		if err != nil || !r.Active {
			t.Fatalf("session ended while renewed: %+v %v", r, err)
		}
	}
	f.m.StopLearning(context.Background())
}

func TestLearningUndoneOnClose(t *testing.T) {
	f := newFixture(t, learnPolicy)
	before := f.m.Policy()
	if _, err := f.m.StartLearning(context.Background(), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	f.m.Close()
	if !reflect.DeepEqual(f.b.InForce(), before) {
		t.Fatalf("learning policy left in force on close: %+v", f.b.InForce())
	}
}

func TestLearningEndedByPolicyFileChange(t *testing.T) {
	f := newFixture(t, learnPolicy)
	if _, err := f.m.StartLearning(context.Background(), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path, []byte("default: deny\nmode: enforce\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, _ := f.m.StopLearning(context.Background())
	if got := f.b.InForce(); got.Default != engine.ActionDeny || len(got.Rules) != 0 || r.Active {
		t.Fatalf("in force %+v, report %+v: the new file must win", got, r)
	}
}

func containsText(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
