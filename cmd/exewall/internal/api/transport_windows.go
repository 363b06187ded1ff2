package api

import (
	"context"
	"net"

	"github.com/exewall/exewall/windows"
)

// What the client's errors tell a user about this OS's transport.
const (
	startHint      = "start the service with `exewall service install` or `sc start exewall`, or run `exewall daemon` from an elevated prompt"
	allowedCallers = "SYSTEM or an elevated administrator"
)

// Listen creates the daemon's named pipe at path (windows.DefaultPipeName
// by default) with windows.PipeSDDL as its security descriptor: only SYSTEM
// and elevated Administrators may connect, remote clients never. It fails,
// rather than share the name, when another process holds the pipe.
func Listen(path string) (net.Listener, error) { return windows.ListenPipe(path) }

// dial refuses a pipe that SYSTEM or Administrators do not own (see
// windows.DialPipe), so a process that took the name first cannot pose as
// the daemon.
func dial(ctx context.Context, path string) (net.Conn, error) { return windows.DialPipe(ctx, path) }
