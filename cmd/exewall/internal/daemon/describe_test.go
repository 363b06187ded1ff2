package daemon

import (
	"context"
	"reflect"
	"testing"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/enginetest"
)

// described is a backend that can say what it is without its counters.
type described struct {
	*enginetest.Backend
	calls int
}

func (d *described) Describe() engine.State {
	d.calls++
	return engine.State{Backend: "described", AttachPoint: "/x", Hooks: []string{"connect4"}}
}

// TestDescribe: the READY line's backend, attach point and hooks come from
// Describe when the backend has it (not Status, which reads every rule's
// counters), and from Status otherwise.
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	d := &described{Backend: enginetest.New(16)}
	m := engine.NewManager(engine.ManagerConfig{Backend: d})
	defer m.Close()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	want := engine.State{Backend: "described", AttachPoint: "/x", Hooks: []string{"connect4"}}
	if got := describe(ctx, d, m); !reflect.DeepEqual(got, want) || d.calls != 1 {
		t.Fatalf("describe gives %+v after %d calls of Describe, want %+v", got, d.calls, want)
	}

	plain := enginetest.New(16)
	m2 := engine.NewManager(engine.ManagerConfig{Backend: plain})
	defer m2.Close()
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := m2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(ctx, plain, m2); got.Backend != st.Backend || got.Backend == "" || !reflect.DeepEqual(got.Hooks, st.Hooks) {
		t.Fatalf("describe gives %+v, Status %+v", got, st)
	}
}
