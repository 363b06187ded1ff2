package api

import (
	"net"

	xwindows "golang.org/x/sys/windows"
)

// peerCred on Windows: a named pipe carries no uid, and none is needed. The
// pipe's security descriptor (platform's pipeSDDL: SYSTEM and Administrators,
// and in a UAC-filtered token Administrators is deny-only) makes the kernel
// refuse everyone else when they open it, and go-winio rejects remote
// clients, so every connection that reaches the server is from SYSTEM or an
// elevated administrator. It is reported as uid 0, root's, which is what the
// daemon's Options.AllowUID admits. The client's pid is read for the log
// only; 0 when unknown.
func peerCred(c net.Conn) (uid, pid int, err error) {
	if f, ok := c.(interface{ Fd() uintptr }); ok {
		var p uint32
		if xwindows.GetNamedPipeClientProcessId(xwindows.Handle(f.Fd()), &p) == nil {
			pid = int(p)
		}
	}
	return 0, pid, nil
}
