//go:build !linux && !darwin && !windows

package api

import (
	"fmt"
	"net"

	"github.com/exewall/exewall/engine"
)

// peerCred is not implemented here: every caller is refused rather than
// trusted.
func peerCred(c net.Conn) (uid, pid int, err error) {
	return -1, 0, fmt.Errorf("peer credentials: %w on this OS", engine.ErrNotSupported)
}
