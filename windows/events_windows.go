//go:build windows

package windows

import (
	"context"
	"sync"

	xwindows "golang.org/x/sys/windows"

	"github.com/exewall/exewall/windows/internal/fwpm"
)

// subscribeDrops asks WFP to deliver each net event as it is recorded:
// the drops go to ch, without waiting (a full channel counts them in
// *lost, under mu).
func subscribeDrops(engine uintptr, ch chan<- drop, mu *sync.Mutex, lost *uint64) (func() error, error) {
	return fwpm.Subscribe(engine, func(ev *fwpm.NetEvent1) {
		fd, ok := fwpm.DecodeDrop(ev)
		if !ok {
			return
		}
		d := drop{Time: fd.Time, Proto: fd.Proto, Remote: fd.Remote, Local: fd.Local, AppID: fd.AppID, FilterID: fd.FilterID, Outbound: fd.Outbound}
		if fd.HasUser {
			d.UserSID = (*xwindows.SID)(ev.Header.UserID).String()
		}
		select {
		case ch <- d:
		default:
			mu.Lock()
			*lost++
			mu.Unlock()
		}
	})
}

// reportDrops turns the drops of exewall's block filters into violations.
func (b *Backend) reportDrops(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-b.drops:
			b.report(d)
		}
	}
}

func (b *Backend) report(d drop) {
	b.ev.Lock()
	defer b.ev.Unlock()
	m, ok := b.byID[d.FilterID]
	if !ok {
		m, ok = b.prevByID[d.FilterID]
	}
	if !ok {
		return // another provider's filter
	}
	v, ok := classify(d, m, b.appPath)
	if !ok {
		return
	}
	b.counters.Denied++
	c := b.perRule[v.Rule]
	c.Denied++
	b.perRule[v.Rule] = c
	select {
	case b.out <- v:
	default:
		b.lost++
	}
}

// appPath turns an app ID into a drive path; the caller holds ev.
func (b *Backend) appPath(id string) string { return appIDToPath(id, b.devices) }

// setDevices replaces the drive map; the caller holds mu, and ev is taken
// for the drop reader.
func (b *Backend) setDevices(m map[string]string) {
	b.ev.Lock()
	b.devices = m
	b.ev.Unlock()
}
