package engine

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// NameBinding is one DNS name -> address binding a rule's name entry has in
// force (`exewall names`): a process of Rule received Addr in a trusted
// resolver's answer for Name until Expires. Via holds the other names bound
// to the address: the CNAME chain that led from Name to it, then names
// answered with it earlier.
type NameBinding struct {
	Rule    string     `json:"rule"`
	Name    string     `json:"name"`
	Via     []string   `json:"via,omitempty"`
	Addr    netip.Addr `json:"addr"`
	Expires time.Time  `json:"expires"`
}

// NameStats are the DNS forwarder's counters and the TTL bounds its
// bindings are clamped to (`status`, /metrics).
type NameStats struct {
	TTLFloorSeconds   float64 `json:"ttl_floor_seconds"`
	TTLCeilingSeconds float64 `json:"ttl_ceiling_seconds"`
	Queries           uint64  `json:"queries"`   // DNS queries of rules with name entries
	Answers           uint64  `json:"answers"`   // answers released after their bindings were in force
	Bindings          uint64  `json:"bindings"`  // bindings learned (new or refreshed)
	Evictions         uint64  `json:"evictions"` // bindings evicted by the per-rule cap
	Failures          uint64  `json:"failures"`  // queries answered SERVFAIL or dropped
	InForce           int     `json:"in_force"`  // bindings in force now
}

// NameLister is implemented by backends that learn name entries' addresses
// from DNS answers (Linux). Names returns the bindings in force, by rule;
// NameStats the forwarder's counters (ok false: no forwarder runs, e.g. no
// rule has a name entry).
type NameLister interface {
	Names(ctx context.Context) ([]NameBinding, error)
	NameStats() (NameStats, bool)
}

// Names returns the name bindings in force. A backend that does not learn
// names is ErrNotSupported.
func (m *Manager) Names(ctx context.Context) ([]NameBinding, error) {
	nl, ok := m.cfg.Backend.(NameLister)
	if !ok {
		return nil, fmt.Errorf("names: %s backend: %w", m.cfg.Backend.Name(), ErrNotSupported)
	}
	bs, err := nl.Names(ctx)
	if bs == nil {
		bs = []NameBinding{}
	}
	return bs, err
}

// nameStats is Status's Names: nil when the backend runs no forwarder.
func (m *Manager) nameStats() *NameStats {
	nl, ok := m.cfg.Backend.(NameLister)
	if !ok {
		return nil
	}
	if st, ok := nl.NameStats(); ok {
		return &st
	}
	return nil
}
