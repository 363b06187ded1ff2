//go:build linux

package linux

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/exewall/exewall/engine"
)

// startLocalNets fills local_nets with the fixed local ranges and follows
// the host's addresses with a netlink subscription, so local-only always
// matches the subnets the host is on now.
func (b *Backend) startLocalNets() error {
	ch := make(chan netlink.AddrUpdate, 64)
	errCh := make(chan error, 1)
	err := netlink.AddrSubscribeWithOptions(ch, b.done, netlink.AddrSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case <-b.done:
				return // the subscription's socket closing under us
			default:
			}
			if strings.Contains(err.Error(), "Wrong sender portid") {
				// A message meant for another netlink socket: harmless.
				b.log.Debug("netlink address subscription", "err", err)
				return
			}
			b.log.Warn("netlink address subscription", "err", err)
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to address changes: %w", err)
	}
	close(errCh)
	b.mu.Lock()
	err = b.syncLocalNets(nil)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		addrs := map[string]netip.Prefix{} // by "ifindex/addr/len"
		for {
			select {
			case <-b.done:
				return
			case u, ok := <-ch:
				if !ok {
					return
				}
				p, ok := onLink(u.LinkAddress)
				if !ok {
					continue
				}
				key := fmt.Sprintf("%d/%s", u.LinkIndex, u.LinkAddress.String())
				if u.NewAddr {
					addrs[key] = p
				} else {
					delete(addrs, key)
				}
				nets := make([]netip.Prefix, 0, len(addrs))
				for _, p := range addrs {
					if !slices.Contains(nets, p) {
						nets = append(nets, p)
					}
				}
				slices.SortFunc(nets, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
				b.mu.Lock()
				if err := b.syncLocalNets(nets); err != nil {
					b.log.Warn("update local networks", "err", err)
				}
				b.mu.Unlock()
			}
		}
	}()
	return nil
}

// onLink turns an interface address into the subnet it is on.
func onLink(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// syncLocalNets writes the fixed ranges, the metadata exceptions and the
// host subnets to local_nets, touching only what changed.
func (b *Backend) syncLocalNets(hostNets []netip.Prefix) error {
	want := map[datapathLocalKey]uint8{}
	for _, p := range engine.LocalRanges {
		want[localKey(p)] = 1
	}
	for _, p := range hostNets {
		want[localKey(p)] = 1
	}
	for _, p := range engine.MetadataAddrs {
		want[localKey(p)] = 0
	}
	if len(b.local) == 0 {
		// First sync (maybe adopted maps): start from what the map holds.
		var k datapathLocalKey
		var v uint8
		it := b.objs.LocalNets.Iterate()
		for it.Next(&k, &v) {
			b.local[k] = v
		}
	}
	for k, v := range want {
		if old, ok := b.local[k]; ok && old == v {
			continue
		}
		if err := b.objs.LocalNets.Update(k, v, ebpf.UpdateAny); err != nil {
			return err
		}
		b.local[k] = v
	}
	for k := range b.local {
		if _, ok := want[k]; !ok {
			b.objs.LocalNets.Delete(k)
			delete(b.local, k)
		}
	}
	b.hostNets = hostNets
	return nil
}
