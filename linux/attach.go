//go:build linux

package linux

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
)

func (b *Backend) linkPin(h hook) string { return filepath.Join(b.cfg.PinDir, "link_"+h.name) }

func (b *Backend) hasPinnedLinks() bool {
	for _, h := range hooks {
		if _, err := os.Stat(b.linkPin(h)); err == nil {
			return true
		}
	}
	return false
}

// attach makes every hook run the loaded programs on our cgroup: a pinned
// link is adopted and its program replaced in place (atomic, no gap, no
// second attachment); otherwise a new multi-attach link is created and pinned.
func (b *Backend) attach() error {
	for _, h := range hooks {
		prog := h.prog(&b.objs)
		pin := b.linkPin(h)
		if b.optional[h.name] != nil {
			// Off (EXEWALL_TEST_DISABLE): an earlier daemon's link goes.
			if l, err := link.LoadPinnedLink(pin, nil); err == nil {
				l.Unpin()
				l.Close()
			}
			continue
		}
		if l, ok := b.links[h.name]; ok {
			if err := l.Update(prog); err != nil {
				return fmt.Errorf("update %s program: %w", h.name, err)
			}
			continue
		}
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			if b.linkOnOurCgroup(l) {
				if err := l.Update(prog); err != nil {
					l.Close()
					return fmt.Errorf("update pinned %s link: %w", h.name, err)
				}
				b.links[h.name] = l
				continue
			}
			// Pinned for another cgroup (the attach point changed): drop it
			// only after the new link is in place.
			defer func() { l.Unpin(); l.Close() }()
			os.Remove(pin)
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: b.cgroupPath, Attach: h.attach, Program: prog})
		if err != nil {
			return notSupported(fmt.Sprintf("attach %s to %s", h.name, b.cgroupPath), err)
		}
		if err := l.Pin(pin); err != nil {
			l.Close()
			return notSupported(fmt.Sprintf("pin %s link (a bpf_link is needed so enforcement outlives the daemon)", h.name), err)
		}
		b.links[h.name] = l
	}
	b.attachGuard()  // optional: a failure is recorded and reported, not fatal
	b.attachDNS()    // likewise; name entries are refused without it
	b.adoptInbound() // likewise, only if pinned: a policy restricting inbound attaches them (inboundBefore)
	return nil
}

func (b *Backend) linkOnOurCgroup(l link.Link) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	cg := info.Cgroup()
	return cg != nil && cg.CgroupId == b.cgroupID
}
