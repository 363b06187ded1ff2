// Package platform is exewall's one OS seam: per OS, the defaults, the
// enforcement backend, reset, doctor's checks, the system service and the
// API's transport. It is the only package that imports the backend packages
// (linux, darwin, windows); each OS file defines the same names.
package platform

import (
	"log/slog"
)

// Config is what the daemon, reset and doctor were told.
type Config struct {
	Cgroup       string // Linux: the cgroup v2 directory to attach to; "" = the mount root
	PinDir       string // Linux: bpffs directory for pins
	StateDir     string // where state is kept (macOS: the pf enable token)
	DetachOnExit bool   // remove enforcement when the backend closes
	Logger       *slog.Logger
}

// ResetHint says what stays in force when a service is removed.
const ResetHint = "enforcement stays in force until you run `exewall reset`"
