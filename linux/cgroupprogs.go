//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// cgroupProg is one optional program on our cgroup (guard, DNS, inbound),
// held by a pinned link like the datapath's own.
type cgroupProg struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
}

// attachProgs attaches progs to our cgroup, or adopts their pinned links and
// replaces the programs in place, so a restart opens no gap. A failure is
// recorded as optional[set] and reported, not fatal.
func (b *Backend) attachProgs(set string, links map[string]link.Link, progs []cgroupProg, pin func(string) string) error {
	var errs []error
	for _, p := range progs {
		if l, ok := links[p.name]; ok {
			if err := l.Update(p.prog); err != nil {
				errs = append(errs, fmt.Errorf("update %s program: %w", p.name, err))
			}
			continue
		}
		if l, err := link.LoadPinnedLink(pin(p.name), nil); err == nil {
			if b.linkOnOurCgroup(l) && l.Update(p.prog) == nil {
				links[p.name] = l
				continue
			}
			l.Unpin()
			l.Close()
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: b.cgroupPath, Attach: p.attach, Program: p.prog})
		if err != nil {
			errs = append(errs, fmt.Errorf("attach %s to %s: %w", p.name, b.cgroupPath, err))
			continue
		}
		if err := l.Pin(pin(p.name)); err != nil {
			l.Close()
			errs = append(errs, fmt.Errorf("pin %s link: %w", p.name, err))
			continue
		}
		links[p.name] = l
	}
	err := errors.Join(errs...)
	if err != nil {
		b.optional[set] = err
		b.log.Warn(set+" hooks", "err", err)
	}
	return err
}

// syncLinks re-pins links whose pin was removed and drops those detached
// behind our back, returning their names for the caller to attach again.
func (b *Backend) syncLinks(what string, links map[string]link.Link, pin func(string) string, report func(bool, string, ...any)) (gone []string) {
	for name, l := range links {
		if !b.linkOnOurCgroup(l) {
			l.Unpin()
			l.Close()
			delete(links, name)
			os.Remove(pin(name))
			gone = append(gone, name)
			continue
		}
		if _, err := os.Stat(pin(name)); errors.Is(err, os.ErrNotExist) {
			err := repin(l, pin(name))
			report(err == nil, "%s %slink pin %s was removed", name, what, pin(name))
		}
	}
	return gone
}
