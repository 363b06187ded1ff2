// Package windows is exewall's Windows backend: WFP filters at
// FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6 in exewall's own provider and sublayer,
// and violations from WFP drop events. It enforces and nothing else: the
// Windows service and the CLI's named pipe live in
// cmd/exewall/internal/platform. Its exported surface is New, Config,
// Checks and Reset.
//
// The translation from an engine.Policy to filter descriptions (filter.go),
// the decoding of drop events (events.go), app-ID, account and SDDL helpers
// are pure Go with no build tags, so they are tested on every OS; the files
// ending in _windows.go turn those descriptions into github.com/tailscale/wf
// rules, and internal/fwpm binds what wf gets wrong or lacks, with its
// structure layouts checked against the Windows SDK on every OS.
//
// Import golang.org/x/sys/windows under an alias (xwindows) in this package:
// the names clash.
package windows
