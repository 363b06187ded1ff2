//go:build linux

package platform

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
	"github.com/exewall/exewall/linux"
)

// namesBackend is the eBPF backend with the DNS forwarder of name entries
// (DESIGN.md "Destination entries") running beside it: the kernel steers
// the queries of rules with name entries to it, it learns through the
// backend. Every other method is the backend's.
type namesBackend struct {
	*linux.Backend
	proxy    *dnsproxy.Proxy
	observer atomic.Pointer[func(exe string, lookups []engine.LearnLookup)]
}

var _ engine.NameLister = (*namesBackend)(nil)

// withNames starts the forwarder on loopback for the daemon's life and
// tells the kernel where it listens. When the kernel refused the DNS hooks
// (name entries are then refused) or the forwarder cannot listen, the
// backend runs without it: steered lookups fail closed.
func withNames(ctx context.Context, b *linux.Backend, log *slog.Logger) engine.Backend {
	if log == nil {
		log = slog.Default()
	}
	nb := &namesBackend{Backend: b}
	cfg := dnsproxy.Config{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Listen6: netip.MustParseAddrPort("[::1]:0"),
		Origin: b, Learner: b, Log: log, Observe: nb.observe}
	p, err := dnsproxy.New(cfg)
	if err != nil {
		cfg.Listen6 = netip.AddrPort{} // no IPv6 loopback on this host
		if p, err = dnsproxy.New(cfg); err != nil {
			log.Warn("dns forwarder of name entries not started: their lookups fail", "err", err)
			return b
		}
	}
	udp4, udp6, tcp4, tcp6 := p.Addrs()
	if err := b.SetForwarder(udp4, tcp4, udp6, tcp6, os.Getpid()); err != nil {
		log.Warn("dns forwarder of name entries not in force", "err", err)
		return b
	}
	go func() {
		if err := p.Serve(ctx); err != nil && ctx.Err() == nil {
			log.Error("dns forwarder stopped: lookups of rules with name entries fail", "err", err)
		}
		b.SetForwarder(netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}, 0)
	}()
	nb.proxy = p
	return nb
}

// SetLookupObserver is told, by executable, the lookups the forwarder
// answered (engine.Manager.ObserveLookups: a learning session's names).
func (n *namesBackend) SetLookupObserver(f func(exe string, lookups []engine.LearnLookup)) {
	n.observer.Store(&f)
}

// observe is the forwarder's Config.Observe: the asking process, as the
// kernel recorded it, names the executable.
func (n *namesBackend) observe(peer netip.AddrPort, tcp bool, bs []dnsproxy.Binding) {
	f := n.observer.Load()
	if f == nil {
		return
	}
	pid, ok := n.Backend.Asker(peer, tcp)
	if !ok {
		return
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return
	}
	(*f)(exe, dnsproxy.LearnLookups(bs))
}

// Names implements engine.NameLister.
func (n *namesBackend) Names(context.Context) ([]engine.NameBinding, error) {
	return n.proxy.NameBindings(n.Backend.RuleName), nil
}

// NameStats implements engine.NameLister.
func (n *namesBackend) NameStats() (engine.NameStats, bool) { return n.proxy.NameStats(), true }
