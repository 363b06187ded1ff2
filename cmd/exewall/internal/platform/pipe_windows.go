//go:build windows

package platform

import (
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
)

// listenPipe listens on the named pipe path (client.DefaultSocket for the
// service) with pipeSDDL as its security descriptor: only SYSTEM and
// elevated Administrators can connect, and remote clients cannot. go-winio
// creates the first instance exclusively, so listenPipe fails when another
// process already holds the name instead of sharing it.
func listenPipe(path string) (net.Listener, error) {
	l, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: pipeSDDL})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}
