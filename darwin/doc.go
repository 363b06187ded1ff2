// Package darwin is exewall's macOS backend: pf rules in the engine's own
// anchor, com.apple/exewall, loaded with pfctl.
//
// pf can tie a packet to the user or group owning its socket, never to an
// executable, so exe: and cgroup: rules are refused (wrapping
// engine.ErrNotSupported) and user: and group: rules are enforced.
//
// Most of the package is plain Go that builds and is tested on every OS:
// Render turns a policy into pf.conf text, Anchor drives pfctl through a
// Runner (tests put a fake pfctl on PATH), and ReadPflog decodes pf's
// binary log (struct pfloghdr in tcpdump's pcap stream). Only the files
// ending in _darwin.go, which read the host's interfaces and run tcpdump,
// are macOS-only. The LaunchDaemon lives in cmd/exewall/internal/platform.
package darwin
