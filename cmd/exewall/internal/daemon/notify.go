package daemon

import (
	"net"
	"os"
)

// sdNotify sends state (e.g. "READY=1") to the service manager named by
// $NOTIFY_SOCKET, as a Type=notify systemd unit expects; without it, it does
// nothing. The protocol is one datagram on a Unix socket ("@" at the start
// means the abstract namespace), so a dozen lines here beat a dependency.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
