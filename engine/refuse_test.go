package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestRefuseNamesAndInbound(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - name: a\n    user: \"1\"\n    action: deny\n    allow: [\"*.example.com port 443\"]\n  - name: b\n    user: \"2\"\n    action: deny\n    allow: [\"10.0.0.0/8 in\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = RefuseNames(p, "why")
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), `rule "a"`) {
		t.Errorf("RefuseNames = %v", err)
	}
	err = RefuseInbound(p, "why")
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), `rule "b"`) {
		t.Errorf("RefuseInbound = %v", err)
	}
	if err := RefuseNames(DefaultPolicy(), "why"); err != nil {
		t.Errorf("no names: %v", err)
	}
	if err := RefuseInbound(&Policy{DefaultInbound: ActionDeny}, "why"); err == nil || !strings.Contains(err.Error(), "default_inbound: deny") {
		t.Errorf("default_inbound deny: %v", err)
	}
}
