//go:build windows

package windows

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf16"

	xwindows "golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// watchNets re-applies the policy when the host's on-link subnets change and
// the policy has a local-only verdict.
func (b *Backend) watchNets(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.netsDirty:
		}
		// Addresses come and go in bursts (DHCP, DAD); let them settle.
		select {
		case <-ctx.Done():
			return
		case <-time.After(settle):
		}
		select {
		case <-b.netsDirty:
		default:
		}
		nets, err := hostUnicastNets()
		if err != nil {
			b.log.Warn("read host addresses", "err", err)
			continue
		}
		b.mu.Lock()
		if !sameNets(nets, b.nets) {
			b.nets = nets
			if b.policy != nil && usesLocalOnly(b.policy) {
				if err := b.applyLocked(b.policy); err != nil {
					b.log.Error("re-apply after a host address change", "err", err)
				} else {
					b.log.Info("host subnets changed; local-only filters updated", "subnets", hostNets(nets))
				}
			}
		}
		b.mu.Unlock()
	}
}

// hostUnicastNets lists the on-link subnets of the host's unicast addresses.
func hostUnicastNets() ([]netip.Prefix, error) {
	rows, err := winipcfg.GetUnicastIPAddressTable(xwindows.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("read host unicast addresses: %w", err)
	}
	var out []netip.Prefix
	for i := range rows {
		a := rows[i].Address.Addr().WithZone("")
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a, int(rows[i].OnLinkPrefixLength)))
		}
	}
	return out, nil
}

// dosDevices maps each drive letter to its NT device path ("C:" ->
// "\Device\HarddiskVolume3"), the prefix of the app IDs of its files.
func dosDevices() map[string]string {
	m := map[string]string{}
	buf := make([]uint16, 512)
	n, err := xwindows.GetLogicalDriveStrings(uint32(len(buf)), &buf[0])
	if err != nil || int(n) > len(buf) {
		return m
	}
	// buf holds "C:\<NUL>D:\<NUL>...".
	for _, root := range strings.Split(string(utf16.Decode(buf[:n])), "\x00") {
		if len(root) < 2 || root[1] != ':' {
			continue
		}
		drive := strings.ToUpper(root[:2])
		name, err := xwindows.UTF16PtrFromString(drive)
		if err != nil {
			continue
		}
		target := make([]uint16, xwindows.MAX_PATH)
		if _, err := xwindows.QueryDosDevice(name, &target[0], uint32(len(target))); err == nil {
			m[drive] = xwindows.UTF16ToString(target)
		}
	}
	return m
}
