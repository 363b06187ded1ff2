package engine

import (
	"context"
	"testing"
)

// countingLister counts the times the sockets are listed.
type countingLister struct {
	memBackend
	calls int
}

func (b *countingLister) Listeners(context.Context) ([]Listener, error) {
	b.calls++
	return listening, nil
}

// TestCutsSkipsListingWhenNothingCanBeCut: a change that is never refused
// (start, reload) to a policy with no rule whose default_inbound allows (or
// that only audits) cuts nothing, and the sockets are not listed for it;
// any other policy still has them listed.
func TestCutsSkipsListingWhenNothingCanBeCut(t *testing.T) {
	b := &countingLister{}
	m := NewManager(ManagerConfig{Backend: b})
	defer m.Close()
	for _, tc := range []struct {
		name string
		next *Policy
		list bool
	}{
		{"default", DefaultPolicy(), false},
		{"default deny outbound", &Policy{Default: ActionDeny}, false},
		{"inbound deny, audit", &Policy{DefaultInbound: ActionDeny, InboundSet: true, Mode: ModeAudit}, false},
		{"inbound deny", &Policy{DefaultInbound: ActionDeny, InboundSet: true}, true},
		{"inbound local-only", &Policy{DefaultInbound: ActionLocalOnly, InboundSet: true}, true},
		{"a rule", &Policy{Rules: []Rule{{Name: "r", Selector: Selector{User: "0"}, Action: ActionDeny}}}, true},
	} {
		before := b.calls
		cuts := m.applyCuts(context.Background(), DefaultPolicy(), tc.next, "test")
		if listed := b.calls > before; listed != tc.list {
			t.Errorf("%s: sockets listed %v, want %v", tc.name, listed, tc.list)
		}
		if !tc.list && len(cuts) != 0 {
			t.Errorf("%s: cuts %v", tc.name, cuts)
		}
	}
	// What the shortcut skips would have found nothing either.
	for _, p := range []*Policy{DefaultPolicy(), {Default: ActionDeny}, {DefaultInbound: ActionDeny, InboundSet: true, Mode: ModeAudit}} {
		if cuts, err := WouldCut(DefaultPolicy(), p, listening, nil, nil); err != nil || len(cuts) != 0 {
			t.Errorf("WouldCut(%+v) = %v, %v", p, cuts, err)
		}
	}
}
