package platform

import (
	"fmt"
	"strings"
)

// The Windows API transport. This file has no build tag so that its tests
// run everywhere; pipe_windows.go uses it.

// defaultPipeName is where the Windows service listens for the CLI.
const defaultPipeName = `\\.\pipe\exewall`

// pipeSDDL is the security descriptor of the service's named pipe. Windows
// has no peer-credential check on a local socket, so the pipe's DACL is the
// whole access control: a protected DACL (P: no inherited entries) that
// grants full access to LocalSystem (SY) and to the Administrators group
// (BA) and to no one else. An Administrators member gets in only from an
// elevated process: in a UAC-filtered token BA is deny-only. Remote clients
// are refused on top of this by go-winio, which creates the pipe with
// PIPE_REJECT_REMOTE_CLIENTS.
const pipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"

// pipeServer is what the CLI learns about the process serving the pipe it
// opened (GetNamedPipeServerProcessId, then that process's token).
type pipeServer struct {
	PID      uint32
	User     string // the token's user SID
	Elevated bool   // the token is elevated (TokenElevation)
}

// checkServer accepts the daemon only when it runs as LocalSystem (the
// service) or with an elevated token (`exewall daemon` from an elevated
// prompt). Anyone can create a pipe name the service has not claimed yet,
// and the pipe's owner says nothing: a process of the caller's own,
// unelevated account would own it. Such an impostor could read every
// command and answer lies, so the CLI refuses it. Under UAC an unelevated
// process cannot start an elevated one without the user's consent.
func checkServer(s pipeServer) error {
	if s.User == "S-1-5-18" || s.Elevated {
		return nil
	}
	return fmt.Errorf("the process serving the pipe (pid %d, user %s) is neither the exewall service (LocalSystem) nor elevated: another program holds the name", s.PID, s.User)
}

func validPipeName(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), `\\.\pipe\`)
}

// serviceDependencies are the services the Windows service starts after:
// the Base Filtering Engine, without which no WFP session opens.
var serviceDependencies = []string{"BFE"}
