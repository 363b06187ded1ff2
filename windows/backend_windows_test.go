//go:build windows

package windows

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/tailscale/wf"
	xwindows "golang.org/x/sys/windows"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows/internal/wfptxn"
)

func TestWFRule(t *testing.T) {
	sd, err := xwindows.SecurityDescriptorFromString("O:SYG:SYD:(A;;CC;;;S-1-5-18)")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range goldenCases {
		fs, err := translate(tc.p, tc.h)
		if err != nil {
			continue
		}
		for _, f := range fs {
			r, err := wfRule(f, `\device\harddiskvolume3\x.exe`, sd)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if !r.Persistent || r.Provider != providerID || r.Sublayer != sublayerID || r.Weight != f.Weight {
				t.Errorf("%s: not a persistent filter of ours: %+v", f, r)
			}
			wantLayer := wf.LayerALEAuthConnectV4
			if f.Layer == layerConnectV6 {
				wantLayer = wf.LayerALEAuthConnectV6
			}
			if r.Layer != wantLayer {
				t.Errorf("%s: layer %s", f, r.Layer)
			}
			if (r.Action == wf.ActionBlock) != (f.Action == actionBlock) || r.HardAction != (f.Action == actionBlock) {
				t.Errorf("%s: action %v hard %v", f, r.Action, r.HardAction)
			}
			n := len(f.Protos)
			for _, set := range []bool{f.Exe != "", f.User != "" || f.Group != "", f.Remote.Bits() > 0, f.PortLo != 0, f.LocalLo != 0} {
				if set {
					n++
				}
			}
			if len(r.Conditions) != n {
				t.Errorf("%s: %d conditions, want %d: %v", f, len(r.Conditions), n, r.Conditions)
			}
			m, err := decodeMeta(r.ProviderData)
			if err != nil || m.Spec != f.String() {
				t.Errorf("%s: provider data %q: %v", f, r.ProviderData, err)
			}
		}
	}
}

// privileged skips unless the test may touch the machine's WFP state: it
// needs an elevated token, and EXEWALL_WFP_TEST=1 because it replaces the
// filters of a running exewall (the GUIDs are fixed).
func privileged(t *testing.T) {
	t.Helper()
	if !xwindows.GetCurrentProcessToken().IsElevated() {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the Windows tests elevated")
		}
		t.Skip("not elevated")
	}
	if os.Getenv("EXEWALL_WFP_TEST") != "1" {
		t.Skip("set EXEWALL_WFP_TEST=1 to let this test replace exewall's WFP filters")
	}
}

func TestTransactionHandle(t *testing.T) {
	if !xwindows.GetCurrentProcessToken().IsElevated() {
		t.Skip("not elevated")
	}
	s, err := wf.New(&wf.Options{Name: "exewall test", Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := wfptxn.EngineHandle(s); err != nil {
		t.Fatal(err)
	}
	if err := wfptxn.Do(s, func() error { _, err := s.Providers(); return err }); err != nil {
		t.Fatal(err)
	}
}

func TestApplyReset(t *testing.T) {
	privileged(t)
	ctx := context.Background()
	b, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "t", Selector: engine.Selector{Exe: `C:\exewall-test\does-not-exist.exe`}, Action: engine.ActionDeny,
			Allow: []engine.Dest{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortLo: 443, PortHi: 443, Proto: engine.ProtoTCP}}},
	}}
	if err := b.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	st, err := b.State(ctx)
	if err != nil || st.Rules != 1 || len(st.Hooks) != 2 {
		t.Fatalf("state after apply: %+v, %v", st, err)
	}
	if drifts, err := b.Sync(ctx, p); err != nil || len(drifts) != 0 {
		t.Fatalf("sync right after apply: %v, %v", drifts, err)
	}
	// A refused policy leaves the one in force alone.
	bad := &engine.Policy{Rules: []engine.Rule{{Name: "c", Selector: engine.Selector{Cgroup: "/x"}}}}
	if err := b.Apply(ctx, bad); err == nil {
		t.Fatal("cgroup rule applied")
	}
	if drifts, err := b.Sync(ctx, p); err != nil || len(drifts) != 0 {
		t.Fatalf("sync after a refused apply: %v, %v", drifts, err)
	}
	if err := b.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := b.State(ctx); err != nil || st.Rules != 0 || len(st.Hooks) != 0 {
		t.Fatalf("state after reset: %+v, %v", st, err)
	}
}
