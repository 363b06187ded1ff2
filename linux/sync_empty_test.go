//go:build linux

package linux

import (
	"context"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestSyncEmptyRulesNoDrift applies a policy with no rules, spelled as a nil
// and as an empty list (`rules: []` and no rules key): a sync must find no
// drift either way, or every periodic sync raises a false tamper alarm.
func TestSyncEmptyRulesNoDrift(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	spellings := []*engine.Policy{
		{Default: engine.ActionAllow, Mode: engine.ModeEnforce},
		{Default: engine.ActionAllow, Mode: engine.ModeEnforce, Rules: []engine.Rule{}},
	}
	for _, applied := range spellings {
		b.apply(t, applied)
		for _, desired := range append(spellings, nil) {
			drifts, err := b.Sync(context.Background(), desired)
			if err != nil {
				t.Fatal(err)
			}
			if len(drifts) != 0 {
				t.Errorf("applied rules %#v, desired %v: drifts %+v", applied.Rules, desired, drifts)
			}
		}
	}
}
