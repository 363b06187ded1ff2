//go:build !linux && !windows

package client

// DefaultSocket is where the daemon listens unless told otherwise (macOS
// has no /run).
const DefaultSocket = "/var/run/exewall/exewall.sock"
