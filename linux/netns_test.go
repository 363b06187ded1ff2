//go:build linux

package linux

import (
	"net/netip"
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

// remoteNet is a host in a network namespace the test creates, reached from
// the test's namespace over a veth pair (kerneltest.NewHost). Its addresses
// are documentation ranges routed only to that veth.
type remoteNet struct {
	port    uint16
	onLink4 netip.Addr // the peer's veth address: on the host's on-link subnet
	onLink6 netip.Addr
	far4    netip.Addr // routed via the peer: neither local nor on-link
	far6    netip.Addr
	subnet4 netip.Prefix
	subnet6 netip.Prefix
}

var (
	hostAddr4 = netip.MustParsePrefix("198.51.100.1/30")
	peerAddr4 = netip.MustParsePrefix("198.51.100.2/30")
	hostAddr6 = netip.MustParsePrefix("2001:db8:e0::1/64")
	peerAddr6 = netip.MustParsePrefix("2001:db8:e0::2/64")
	farAddr4  = netip.MustParseAddr("203.0.113.10")
	farAddr6  = netip.MustParseAddr("2001:db8:e1::10")
)

// newRemoteNet builds the namespace with TCP listeners on every address.
func newRemoteNet(t *testing.T) *remoteNet {
	t.Helper()
	h := kerneltest.NewHost(t, kerneltest.HostConfig{Host4: hostAddr4, Peer4: peerAddr4, Host6: hostAddr6, Peer6: peerAddr6,
		Far: []netip.Addr{farAddr4, farAddr6}})
	return &remoteNet{port: h.Ports[0], onLink4: peerAddr4.Addr(), onLink6: peerAddr6.Addr(), far4: farAddr4, far6: farAddr6,
		subnet4: hostAddr4.Masked(), subnet6: hostAddr6.Masked()}
}
