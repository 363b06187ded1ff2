package engine_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/exewall/exewall/engine"
)

// nopBackend puts nothing in force: what a benchmark of the manager
// measures is then the manager's own work.
type nopBackend struct{}

func (nopBackend) Name() string                                { return "nop" }
func (nopBackend) Apply(context.Context, *engine.Policy) error { return nil }
func (nopBackend) State(context.Context) (engine.State, error) { return engine.State{}, nil }
func (nopBackend) Violations() <-chan engine.Violation         { return nil }
func (nopBackend) Close() error                                { return nil }

// bigPolicy is n rules like the benchmark's: every second one has a
// destination of its own.
func bigPolicy(n int) (*engine.Policy, pathResolver) {
	res := pathResolver{}
	p := &engine.Policy{Default: engine.ActionAllow, Mode: engine.ModeEnforce}
	actions := []engine.Action{engine.ActionDeny, engine.ActionAllow, engine.ActionLocalOnly}
	for i := range n + 1 {
		exe := fmt.Sprintf("/opt/decoys/d%06d", i)
		res[exe] = uint64(i + 1)
		if i == n {
			break
		}
		r := engine.Rule{Name: fmt.Sprintf("r%06d", i), Selector: engine.Selector{Exe: exe}, Action: actions[i%3]}
		if i%2 == 0 {
			k := i / 2
			r.Deny = []engine.Dest{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k >> 8), byte(k), 0}), 24),
				PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}
		}
		p.Rules = append(p.Rules, r)
	}
	return p, res
}

// BenchmarkManagerAddRule10k is one CLI change (deny, then allow, of one
// rule) on a 10,000-rule policy file, without the backend: validation,
// the file edit and its atomic write.
func BenchmarkManagerAddRule10k(b *testing.B) {
	p, res := bigPolicy(10000)
	data, err := engine.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	m := engine.NewManager(engine.ManagerConfig{Backend: nopBackend{}, Resolver: res, PolicyFile: path})
	defer m.Close()
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := []engine.Action{engine.ActionDeny, engine.ActionAllow}[i%2]
		if _, err := m.AddRule(ctx, engine.Rule{Name: "bench-change", Selector: engine.Selector{Exe: "/opt/decoys/d010000"}, Action: a}); err != nil {
			b.Fatal(err)
		}
	}
}
