package client

import (
	"fmt"
	"strings"
)

// pipeServer is what the client learns about the process serving the named
// pipe it opened on Windows (GetNamedPipeServerProcessId, then that
// process's token). This file has no build tag so its test runs everywhere.
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
// command and answer lies, so the client refuses it. Under UAC an
// unelevated process cannot start an elevated one without consent.
func checkServer(s pipeServer) error {
	if s.User == "S-1-5-18" || s.Elevated {
		return nil
	}
	return fmt.Errorf("the process serving the pipe (pid %d, user %s) is neither the exewall service (LocalSystem) nor elevated: another program holds the name", s.PID, s.User)
}

func validPipeName(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), `\\.\pipe\`)
}
