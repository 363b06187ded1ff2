// Package darwin is exewall's macOS backend: pf rules in the engine's own
// anchor, com.apple/exewall, loaded with pfctl.
//
// pf can tie a packet to the user or group owning its socket, never to an
// executable, so exe: and cgroup: rules are refused (wrapping
// engine.ErrNotSupported) and user: and group: rules are enforced.
//
// Most of the package is plain Go that builds and is tested on every OS:
// Render turns a policy into pf.conf text, Anchor drives pfctl through a
// Runner (tests put a fake pfctl on PATH), ParsePflog reads tcpdump's pflog
// lines and Plist writes the launchd job. Only backend_darwin.go, which reads
// the host's interfaces, runs tcpdump and installs the LaunchDaemon, is
// macOS-only.
package darwin
