// Package windows is exewall's Windows backend: WFP filters at
// FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6 in exewall's own provider and sublayer,
// violations from WFP drop events, the Windows service and the CLI's named
// pipe.
//
// The package is split the way the design asks: the translation from an
// engine.Policy to a list of Filter descriptions (filter.go), the decoding of
// drop events (events.go), app-ID and SDDL helpers are pure Go with no build
// tags, so they are tested on every OS; the files ending in _windows.go turn
// those descriptions into github.com/tailscale/wf rules and talk to the
// service control manager.
//
// Import golang.org/x/sys/windows under an alias (xwindows) in this package:
// the names clash.
package windows
