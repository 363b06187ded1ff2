package api

import "github.com/exewall/exewall/darwin"

// DefaultSocket is where the daemon listens unless told otherwise: macOS has
// no /run. The LaunchDaemon passes the same path (darwin.DaemonArgs).
const DefaultSocket = darwin.DefaultSocket
