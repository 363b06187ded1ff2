//go:build linux

package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
)

func TestLearnEndpoints(t *testing.T) {
	f := newAPIFixture(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.Run(ctx)
	c := client.New(f.socket)

	var re *client.Error
	if _, err := c.LearnStatus(ctx); !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("status without a session: %v", err)
	}
	rep, err := c.StartLearning(ctx, time.Hour, 0)
	if err != nil || !rep.Active || rep.Deadline == nil || len(rep.Previous.Rules) != 1 {
		t.Fatalf("start: %+v %v", rep, err)
	}
	if _, err := c.StartLearning(ctx, time.Hour, 0); !errors.As(err, &re) || re.Status != http.StatusConflict {
		t.Fatalf("second start: %v", err)
	}
	if err := c.SetMode(ctx, "audit"); !errors.As(err, &re) || re.Status != http.StatusConflict ||
		!strings.Contains(re.Message, "learning") {
		t.Fatalf("edit during learning: %v", err)
	}
	f.b.Emit(engine.Violation{Time: time.Now(), Exe: "/bin/x", Comm: "x", Proto: "tcp",
		Daddr: netip.MustParseAddr("127.0.0.1"), Dport: 80, Verdict: engine.VerdictAudit})
	for deadline := time.Now().Add(5 * time.Second); ; {
		rep, err = c.LearnStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event not counted: %+v", rep)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep, err = c.StopLearning(ctx)
	if err != nil || rep.Active || len(rep.Observed) != 1 || rep.Observed[0].Dests[0].Port != 80 {
		t.Fatalf("stop: %+v %v", rep, err)
	}
	if p, err := engine.Parse([]byte(rep.Policy)); err != nil || p.RuleByName("x") == nil || p.RuleByName("x").Action != engine.ActionLocalOnly {
		t.Fatalf("learned policy (127.0.0.1 only: local-only) %v:\n%s", err, rep.Policy)
	}
	if data, _ := os.ReadFile(f.policy); string(data) != fixturePolicy {
		t.Fatalf("policy file touched by learning:\n%s", data)
	}
	if code, _ := f.request("POST", "/v1/learn", strings.NewReader(`{"duration":-1}`)); code != http.StatusBadRequest {
		t.Fatalf("negative duration: %d", code)
	}
}
