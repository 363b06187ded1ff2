package client

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	xwindows "golang.org/x/sys/windows"
)

// dial connects to the service's named pipe. It refuses a pipe whose owner
// is not SYSTEM, Administrators or the caller itself: anyone can create a
// pipe name that the service has not claimed yet, and a client must not
// hand its commands to such an impostor.
func dial(ctx context.Context, pipe string) (net.Conn, error) {
	c, err := winio.DialPipeContext(ctx, pipe)
	if err != nil {
		return nil, err
	}
	if err := checkPipeOwner(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func checkPipeOwner(c net.Conn) error {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return errors.New("cannot check the pipe's owner: no handle")
	}
	sd, err := xwindows.GetSecurityInfo(xwindows.Handle(f.Fd()), xwindows.SE_KERNEL_OBJECT, xwindows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("read the pipe's owner: %w", err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("read the pipe's owner: %w", err)
	}
	if owner.IsWellKnown(xwindows.WinLocalSystemSid) || owner.IsWellKnown(xwindows.WinBuiltinAdministratorsSid) {
		return nil
	}
	if u, err := xwindows.GetCurrentProcessToken().GetTokenUser(); err == nil && owner.Equals(u.User.Sid) {
		return nil
	}
	return fmt.Errorf("pipe is owned by %s, not by SYSTEM or Administrators: another process holds the name", owner)
}
