package client

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	xwindows "golang.org/x/sys/windows"
)

// dial connects to the service's named pipe and checks the process serving
// it (checkServer) before a byte is sent.
func dial(ctx context.Context, pipe string) (net.Conn, error) {
	if !validPipeName(pipe) {
		return nil, fmt.Errorf("%s is not a named pipe (\\\\.\\pipe\\NAME)", pipe)
	}
	c, err := winio.DialPipeContext(ctx, pipe)
	if err != nil {
		return nil, err
	}
	if err := checkPipeServer(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", pipe, err)
	}
	return c, nil
}

// checkPipeServer reads the server process of a client pipe handle and its
// token, and lets checkServer judge them.
func checkPipeServer(c net.Conn) error {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return errors.New("cannot check the pipe's server: no handle")
	}
	var s pipeServer
	if err := xwindows.GetNamedPipeServerProcessId(xwindows.Handle(f.Fd()), &s.PID); err != nil {
		return fmt.Errorf("find the pipe's server process: %w", err)
	}
	p, err := xwindows.OpenProcess(xwindows.PROCESS_QUERY_LIMITED_INFORMATION, false, s.PID)
	if err != nil {
		// An elevated or SYSTEM server is still open to an elevated
		// caller; an unelevated caller reaches only servers it may query,
		// and a SYSTEM pipe's DACL refuses unelevated callers anyway.
		return fmt.Errorf("inspect the pipe's server process %d: %w", s.PID, err)
	}
	defer xwindows.CloseHandle(p)
	var tok xwindows.Token
	if err := xwindows.OpenProcessToken(p, xwindows.TOKEN_QUERY, &tok); err != nil {
		return fmt.Errorf("read the token of the pipe's server process %d: %w", s.PID, err)
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return fmt.Errorf("read the user of the pipe's server process %d: %w", s.PID, err)
	}
	s.User = u.User.Sid.String()
	s.Elevated = tok.IsElevated()
	return checkServer(s)
}
