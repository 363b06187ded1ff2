//go:build windows

package windows

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	xwindows "golang.org/x/sys/windows"
)

// ListenPipe listens on the named pipe path (DefaultPipeName for the
// service) with PipeSDDL as its security descriptor: only SYSTEM and
// elevated Administrators can connect, and remote clients cannot. go-winio
// creates the first instance exclusively, so ListenPipe fails when another
// process already holds the name instead of sharing it.
func ListenPipe(path string) (net.Listener, error) {
	l, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: PipeSDDL})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}

// DialPipe connects to the service's named pipe at path. It refuses a pipe
// whose owner is not SYSTEM, Administrators or the caller itself: anyone can
// create a pipe name that the service has not claimed yet, and the CLI must
// not hand its commands to such an impostor. The connection is opened at the
// anonymous impersonation level, so the server cannot act as the caller.
func DialPipe(ctx context.Context, path string) (net.Conn, error) {
	c, err := winio.DialPipeContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (is the exewall service running, and is this prompt elevated?): %w", path, err)
	}
	if err := checkPipeOwner(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", path, err)
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
