package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestViolationStreamJSONLines(t *testing.T) {
	if newViolationStream("text", nil, nil, nil) != nil {
		t.Fatal("text format must not stream violations")
	}
	var out syncBuf
	done := make(chan struct{})
	defer close(done)
	s := newViolationStream("json", &out, slog.New(slog.DiscardHandler), done)
	v := engine.Violation{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), PID: 7, UID: 8, Comm: "curl", Exe: "/usr/bin/curl",
		Rule: "curl", Verdict: engine.VerdictDeny, Proto: "tcp", Family: "ipv4", Daddr: netip.MustParseAddr("127.0.0.1"), Dport: 80}
	s.write(v)
	for deadline := time.Now().Add(5 * time.Second); out.String() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing written")
		}
	}
	// The fields of `violations --json`, by the names docs/operations.md documents.
	var fields map[string]any
	if err := json.Unmarshal([]byte(out.String()), &fields); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"time": "2026-01-02T03:04:05.000000006Z", "pid": 7.0, "uid": 8.0, "comm": "curl",
		"exe": "/usr/bin/curl", "rule": "curl", "verdict": "deny", "proto": "tcp", "family": "ipv4", "daddr": "127.0.0.1", "dport": 80.0} {
		if fields[k] != want {
			t.Errorf("%s: %v, want %v (line %s)", k, fields[k], want, out.String())
		}
	}
	if n := bytes.Count([]byte(out.String()), []byte("\n")); n != 1 {
		t.Fatalf("%d lines, want 1", n)
	}
	var back engine.Violation
	if err := json.Unmarshal([]byte(out.String()), &back); err != nil || back != v {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
