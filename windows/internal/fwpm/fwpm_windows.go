//go:build windows

package fwpm

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Filters lists the filters of provider at each of layers, through an
// enumeration template that names the provider: filters of other
// providers are never read, so none of their conditions can fail the
// listing.
func Filters(engine uintptr, provider GUID, layers []GUID) ([]FilterInfo, error) {
	var out []FilterInfo
	for _, layer := range layers {
		fs, err := filtersAt(engine, provider, layer)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

func filtersAt(engine uintptr, provider GUID, layer GUID) ([]FilterInfo, error) {
	t := EnumTemplate(&provider, layer)
	var enum windows.Handle
	if err := fwpmFilterCreateEnumHandle0(engine, &t, &enum); err != nil {
		return nil, fmt.Errorf("enumerate wfp filters: %w", err)
	}
	defer fwpmFilterDestroyEnumHandle0(engine, enum)
	var out []FilterInfo
	for {
		var entries **Filter0
		var n uint32
		if err := fwpmFilterEnum0(engine, enum, 100, &entries, &n); err != nil {
			return nil, fmt.Errorf("enumerate wfp filters: %w", err)
		}
		if n == 0 {
			return out, nil
		}
		for _, f := range unsafe.Slice(entries, n) {
			fi := f.Info()
			if fi.Provider == provider { // the template already says so
				out = append(out, fi)
			}
		}
		p := uintptr(unsafe.Pointer(entries))
		fwpmFreeMemory0(&p)
	}
}

// NetEventsCollected reports the engine's FWPM_ENGINE_COLLECT_NET_EVENTS
// option: without it WFP records no drop events.
func NetEventsCollected(engine uintptr) (bool, error) {
	var v *Value0
	if err := fwpmEngineGetOption0(engine, EngineCollectNetEvents, &v); err != nil {
		return false, fmt.Errorf("read wfp engine option: %w", err)
	}
	defer func() {
		p := uintptr(unsafe.Pointer(v))
		fwpmFreeMemory0(&p)
	}()
	if v == nil || v.Type != TypeUint32 {
		return false, errors.New("read wfp engine option: unexpected value type")
	}
	return uint32(v.Value) != 0, nil
}

// Subscriptions deliver to handlers through one callback: Windows calls it
// on its own threads, and each syscall.NewCallback is kept for the life of
// the process, so it is made once.
var (
	subMu    sync.Mutex
	subs     = map[uintptr]func(*NetEvent1){}
	nextSub  uintptr
	callback uintptr
)

func onNetEvent(ctx uintptr, ev *NetEvent1) uintptr {
	subMu.Lock()
	h := subs[ctx]
	subMu.Unlock()
	if h != nil {
		h(ev)
	}
	return 0
}

// Subscribe delivers every net event WFP records from now on to h, on a
// Windows thread, until the returned function is called. h must copy what
// it keeps: ev is freed when h returns.
func Subscribe(engine uintptr, h func(*NetEvent1)) (unsubscribe func() error, err error) {
	subMu.Lock()
	if callback == 0 {
		callback = syscall.NewCallback(onNetEvent)
	}
	nextSub++
	id := nextSub
	subs[id] = h
	subMu.Unlock()
	// No conditions: every event; the handler keeps the drops.
	t := NetEventEnumTemplate0{EndTime: Filetime{LowDateTime: 0xffffffff, HighDateTime: 0x7fffffff}}
	s := NetEventSubscription0{EnumTemplate: &t}
	var ev windows.Handle
	if err := fwpmNetEventSubscribe0(engine, &s, callback, id, &ev); err != nil {
		subMu.Lock()
		delete(subs, id)
		subMu.Unlock()
		return nil, fmt.Errorf("subscribe to wfp net events: %w", err)
	}
	return func() error {
		err := fwpmNetEventUnsubscribe0(engine, ev)
		subMu.Lock()
		delete(subs, id)
		subMu.Unlock()
		if err != nil {
			return fmt.Errorf("unsubscribe from wfp net events: %w", err)
		}
		return nil
	}, nil
}
