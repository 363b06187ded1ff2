//go:build !linux

package dnsproxy

import (
	"context"
	"net"
)

// serveUDPFast is serveUDP where the Linux worker path does not exist.
func (p *Proxy) serveUDPFast(ctx context.Context, c *net.UDPConn) error {
	return p.serveUDP(ctx, c)
}
