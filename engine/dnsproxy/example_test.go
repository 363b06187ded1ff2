package dnsproxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
)

// kernelSide stands for what a backend provides: which rule's program sent
// a redirected query and to which server (e.g. looked up by the socket's
// cookie in a BPF map written by the connect/sendmsg hooks), and the maps
// the connect hooks read (rule id, address) -> expiry from.
type kernelSide struct{}

func (kernelSide) Origin(peer netip.AddrPort, tcp bool) (uint32, netip.AddrPort, bool) {
	return 1, netip.MustParseAddrPort("192.0.2.53:53"), true
}
func (kernelSide) Learn(bs []dnsproxy.Binding) error  { return nil } // write the map entries
func (kernelSide) Forget(bs []dnsproxy.Binding) error { return nil } // delete them

// Example shows how a backend wires the forwarder: the policy's trusted
// resolvers, a mark on the upstream sockets so they are not redirected
// back, the forwarder's table for `exewall names` and status, its lookups
// for a learning session, and the compiled policy with the default
// encrypted-DNS denies.
func Example() {
	policy := &engine.Policy{Default: engine.ActionAllow}
	trusted, _ := dnsproxy.TrustedResolvers(policy.Resolvers) // redirect only queries to these
	_ = trusted
	compiled := engine.WithEncryptedDNSDenied(policy) // what the kernel maps must say
	_ = compiled

	k := kernelSide{}
	p, err := dnsproxy.New(dnsproxy.Config{
		Listen4: netip.MustParseAddrPort("127.0.0.1:0"),
		Origin:  k,
		Learner: k,
		Control: func(network, address string, c syscall.RawConn) error {
			return nil // e.g. setsockopt SO_MARK, or mark the socket's cookie in a map the hooks skip
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Serve(ctx) }()

	// engine.NameLister, implemented by the backend:
	names := p.NameBindings(func(rule uint32) (string, bool) { return "backup", rule == 1 })
	stats := p.NameStats()
	// A learning session: Config.Observe gets the asker of each answer;
	// the backend maps it to the executable and calls
	// manager.ObserveLookups(exe, dnsproxy.LearnLookups(bs)).
	fmt.Println(len(names), stats.TTLFloorSeconds, stats.TTLCeilingSeconds)
	cancel()
	fmt.Println(<-done)
	// Output:
	// 0 10 3600
	// <nil>
}
