package windows

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/exewall/exewall/engine"
)

// filterMeta is stored in each WFP filter's provider data, so that a
// restarted service (or `netsh wfp show filters`) can tell which rule a
// filter enforces, and Sync can compare the kernel with the policy.
type filterMeta struct {
	Rule  string `json:"rule,omitempty"`
	Exe   string `json:"exe,omitempty"`
	AppID string `json:"app_id,omitempty"` // the app ID the exe resolved to when the filter was added
	Block bool   `json:"block,omitempty"`
	Audit bool   `json:"audit,omitempty"`
	In    bool   `json:"in,omitempty"` // at a receive/accept layer: it judges what the program accepts
	Spec  string `json:"spec"`         // Filter.String()
}

func metaOf(f filter, appID string) filterMeta {
	return filterMeta{Rule: f.Rule, Exe: f.Exe, AppID: appID, Block: f.Action == actionBlock, Audit: f.Audit,
		In: f.Layer.inbound(), Spec: f.String()}
}

func (m filterMeta) encode() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // strings and bools always marshal
	}
	return b
}

func decodeMeta(b []byte) (filterMeta, error) {
	var m filterMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode filter provider data: %w", err)
	}
	if m.Spec == "" {
		return m, errors.New("decode filter provider data: no spec")
	}
	return m, nil
}

// usesLocalOnly reports whether the policy's filters depend on the host's
// subnets.
func usesLocalOnly(p *engine.Policy) bool {
	if p.Default == engine.ActionLocalOnly || p.DefaultInbound == engine.ActionLocalOnly {
		return true
	}
	for i := range p.Rules {
		if p.Rules[i].Action == engine.ActionLocalOnly {
			return true
		}
	}
	return false
}

// sameNets reports whether two lists of host subnets give the same filters.
func sameNets(a, b []netip.Prefix) bool {
	x, y := hostNets(a), hostNets(b)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
