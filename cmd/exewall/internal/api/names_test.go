//go:build linux

package api

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/exewall/exewall/client"
	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// namesBackend is the in-memory backend with a forwarder's table.
type namesBackend struct {
	*enginetest.Backend
	bs []engine.NameBinding
}

func (b namesBackend) Names(context.Context) ([]engine.NameBinding, error) { return b.bs, nil }
func (b namesBackend) NameStats() (engine.NameStats, bool) {
	return engine.NameStats{TTLFloorSeconds: 10, TTLCeilingSeconds: 3600, Queries: 3, InForce: len(b.bs)}, true
}

// TestNamesEndpoint: GET /v1/names lists the backend's bindings and status
// carries the forwarder's TTL bounds and counters.
func TestNamesEndpoint(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(fixturePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute).Round(0)
	b := namesBackend{enginetest.New(4), []engine.NameBinding{{Rule: "gh", Name: "api.github.com", Via: []string{"lb.github.com"},
		Addr: netip.MustParseAddr("192.0.2.1"), Expires: exp}}}
	m := engine.NewManager(engine.ManagerConfig{Backend: b, PolicyFile: policy})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, Options{Manager: m, AllowUID: os.Getuid()}) }()
	defer func() { cancel(); <-done }()
	c := client.New(sock)
	got, err := c.Names(ctx)
	if err != nil || len(got) != 1 || got[0].Name != "api.github.com" || got[0].Via[0] != "lb.github.com" || !got[0].Expires.Equal(exp) {
		t.Fatalf("names: %+v %v", got, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Names == nil || st.Names.TTLFloorSeconds != 10 || st.Names.TTLCeilingSeconds != 3600 || st.Names.InForce != 1 {
		t.Fatalf("status: %+v %v", st.Names, err)
	}
}
