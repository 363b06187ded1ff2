//go:build windows

package windows

import (
	"context"
	"fmt"

	"github.com/exewall/exewall/engine"
)

// Sync implements engine.Syncer: it compares the filters of exewall's
// provider with those the policy asks for (their specs and resolved app
// IDs) and re-applies the policy when they differ.
func (b *Backend) Sync(ctx context.Context, p *engine.Policy) ([]engine.Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, err := translate(p, machine{Nets: b.nets, SelfExe: b.self})
	if err != nil {
		return nil, err
	}
	ids, err := b.resolveAppIDs(fs)
	if err != nil {
		return nil, err
	}
	want := map[string]string{}
	for _, f := range fs {
		want[f.String()] = ids[f.Exe]
	}
	var drifts []engine.Drift
	hasProv, hasSub, err := b.objects()
	if err != nil {
		return nil, err
	}
	if !hasProv || !hasSub {
		drifts = append(drifts, engine.Drift{What: "exewall's wfp provider or sublayer is missing"})
	}
	ours, err := b.ourFilters()
	if err != nil {
		return nil, err
	}
	have := map[string]string{}
	foreign := 0
	for _, f := range ours {
		m, err := decodeMeta(f.ProviderData)
		if err != nil {
			foreign++
			continue
		}
		have[m.Spec] = m.AppID
	}
	if foreign > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d filters of exewall's provider carry no exewall spec", foreign)})
	}
	var missing, extra int
	for spec, id := range want {
		got, ok := have[spec]
		switch {
		case !ok:
			missing++
		case got != id:
			drifts = append(drifts, engine.Drift{What: fmt.Sprintf("app id changed for %q: %s, was %s", spec, id, got)})
		}
	}
	for spec := range have {
		if _, ok := want[spec]; !ok {
			extra++
		}
	}
	if missing > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d wfp filters missing", missing)})
	}
	if extra > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d unexpected wfp filters", extra)})
	}
	if len(drifts) == 0 {
		return nil, nil
	}
	if err := b.applyLocked(p); err != nil {
		return drifts, err
	}
	for i := range drifts {
		drifts[i].Repaired = true
	}
	return drifts, nil
}
