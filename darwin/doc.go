// Package darwin is exewall's macOS backend: pf rules in the engine's own
// anchor, com.apple/exewall, loaded with pfctl.
//
// pf can tie a packet to the user or group owning its socket, never to an
// executable, so exe: and cgroup: rules are refused (wrapping
// engine.ErrNotSupported) and user: and group: rules are enforced.
//
// Its exported surface is New, Config, Checks, Reset and AnchorPath. Most
// of the package is plain Go that builds and is tested on every OS:
// renderRuleset turns a policy into pf.conf text, pfAnchor drives pfctl
// through a runner (tests put a fake pfctl on PATH), and readPflog decodes
// pf's binary log (struct pfloghdr in tcpdump's pcap stream). Only the files
// ending in _darwin.go, which read the host's interfaces and run tcpdump,
// are macOS-only. The LaunchDaemon lives in cmd/exewall/internal/platform.
package darwin
