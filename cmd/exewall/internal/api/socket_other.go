//go:build !linux && !darwin && !windows

package api

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/var/run/exewall/exewall.sock"
