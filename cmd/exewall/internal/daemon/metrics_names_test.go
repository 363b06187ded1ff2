package daemon

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

type namesBackend struct{ *enginetest.Backend }

func (namesBackend) Names(context.Context) ([]engine.NameBinding, error) { return nil, nil }
func (namesBackend) NameStats() (engine.NameStats, bool) {
	return engine.NameStats{Queries: 5, Answers: 4, Bindings: 6, Evictions: 1, Failures: 1, InForce: 5}, true
}

// TestMetricsNames: /metrics counts the forwarder's queries, answers,
// bindings and evictions.
func TestMetricsNames(t *testing.T) {
	m := engine.NewManager(engine.ManagerConfig{Backend: namesBackend{enginetest.New(4)}})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(m))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.Metric {
			switch mf.GetName() {
			case "exewall_dns_total":
				got[mt.Label[0].GetValue()] = mt.Counter.GetValue()
			case "exewall_dns_bindings_in_force":
				got["in_force"] = mt.Gauge.GetValue()
			}
		}
	}
	want := map[string]float64{"queries": 5, "answers": 4, "bindings": 6, "evictions": 1, "failures": 1, "in_force": 5}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
