//go:build windows

package windows

import (
	"context"
	"fmt"

	"github.com/tailscale/wf"
	xwindows "golang.org/x/sys/windows"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows/internal/fwpm"
	"github.com/exewall/exewall/windows/internal/wfptxn"
)

// Checks reports, for `exewall doctor`, whether this process can manage WFP
// and whether WFP records the drops exewall reports.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	var cs []engine.Check
	elevated := xwindows.GetCurrentProcessToken().IsElevated()
	c := engine.Check{Name: "elevated", OK: elevated, Detail: "running with an elevated (administrator) token"}
	if !elevated {
		c.Detail = "not elevated: run from an elevated prompt, or as the exewall service"
	}
	cs = append(cs, c)
	s, err := wf.New(&wf.Options{Name: "exewall doctor", Dynamic: true})
	if err != nil {
		return append(cs, engine.Check{Name: "wfp", Detail: fmt.Sprintf("cannot open the WFP engine: %v", err)})
	}
	defer s.Close()
	cs = append(cs, engine.Check{Name: "wfp", OK: true, Detail: fmt.Sprintf("filters at FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6, hard blocks in sublayer %s (weight %#x)",
		xwindows.GUID(sublayerID), sublayerWeight)})
	cs = append(cs, netEventsCheck(s))
	cs = append(cs, engine.Check{Name: "audit", OK: true, Detail: "audited attempts are permitted but not reported: WFP records drops, not permits (docs/windows.md)"})
	return cs
}

// netEventsCheck reads FWPM_ENGINE_COLLECT_NET_EVENTS: with it off, WFP
// records no drop and `exewall violations` stays empty.
func netEventsCheck(s *wf.Session) engine.Check {
	c := engine.Check{Name: "net events"}
	h, err := wfptxn.EngineHandle(s)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	on, err := fwpm.NetEventsCollected(h)
	switch {
	case err != nil:
		c.Detail = err.Error()
	case on:
		c.OK, c.Detail = true, "WFP collects net events: drops are reported as violations"
	default:
		c.Detail = "WFP does not collect net events (FWPM_ENGINE_COLLECT_NET_EVENTS is off): no violation is reported; turn it on with `netsh wfp set options netevents=on`"
	}
	return c
}
