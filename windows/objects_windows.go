//go:build windows

package windows

import (
	"fmt"

	"github.com/tailscale/wf"

	"github.com/exewall/exewall/windows/internal/fwpm"
)

// sublayerWeight puts exewall's sublayer first (the highest weight a
// sublayer can have). WFP evaluates every sublayer of a layer and a block
// in any of them wins over a permit, unless a permit with the hard
// (action-right-cleared) flag decides first: our blocks are hard, and
// evaluating our sublayer first means no other sublayer's hard permit is
// reached before them. Only a callout can still veto. Another product
// using the same weight is evaluated in an order WFP does not define.
const sublayerWeight = 0xffff

// ensureObjects adds exewall's provider and sublayer when they are missing.
// Neither names a service: a provider tied to a service disables its filters
// while the service is stopped, which would fail open.
func (b *Backend) ensureObjects() error {
	hasProv, hasSub, err := b.objects()
	if err != nil {
		return err
	}
	if !hasProv {
		err := b.sess.AddProvider(&wf.Provider{
			ID:          providerID,
			Name:        "exewall",
			Description: "exewall per-executable firewall",
			Persistent:  true,
		})
		if err != nil {
			return fmt.Errorf("add wfp provider: %w", err)
		}
	}
	if !hasSub {
		err := b.sess.AddSublayer(&wf.Sublayer{
			ID:          sublayerID,
			Name:        "exewall",
			Description: "exewall policy filters",
			Persistent:  true,
			Provider:    providerID,
			Weight:      sublayerWeight,
		})
		if err != nil {
			return fmt.Errorf("add wfp sublayer: %w", err)
		}
	}
	return nil
}

// objects reports whether exewall's provider and sublayer exist. Providers
// and sublayers carry no conditions, so wf lists them safely whatever else
// is installed.
func (b *Backend) objects() (hasProvider, hasSublayer bool, err error) {
	provs, err := b.sess.Providers()
	if err != nil {
		return false, false, fmt.Errorf("list wfp providers: %w", err)
	}
	for _, p := range provs {
		hasProvider = hasProvider || p.ID == providerID
	}
	subs, err := b.sess.Sublayers(providerID)
	if err != nil {
		return false, false, fmt.Errorf("list wfp sublayers: %w", err)
	}
	for _, s := range subs {
		hasSublayer = hasSublayer || s.ID == sublayerID
	}
	return hasProvider, hasSublayer, nil
}

// ourFilters lists the filters of exewall's provider, and only them (see
// internal/fwpm): another product's filter can never fail the listing.
func (b *Backend) ourFilters() ([]fwpm.FilterInfo, error) {
	layers := make([]fwpm.GUID, len(enumLayers))
	for i, l := range enumLayers {
		layers[i] = fwpm.GUID(l)
	}
	fs, err := fwpm.Filters(b.engine, fwpm.GUID(providerID), layers)
	if err != nil {
		return nil, fmt.Errorf("list exewall's wfp filters: %w", err)
	}
	return fs, nil
}

// enumLayers are the layers searched for exewall's filters: those it adds
// to, and the inbound ALE layers, so that Reset also removes what a
// version filtering inbound traffic added.
var enumLayers = []wf.LayerID{
	wf.LayerALEAuthConnectV4, wf.LayerALEAuthConnectV6,
	wf.LayerALEAuthRecvAcceptV4, wf.LayerALEAuthRecvAcceptV6,
	wf.LayerALEAuthListenV4, wf.LayerALEAuthListenV6,
}

// loadIDs maps the run-time ids of exewall's filters, which drop events
// name, to what each enforces (its provider data).
func (b *Backend) loadIDs() error {
	fs, err := b.ourFilters()
	if err != nil {
		return err
	}
	m := make(map[uint64]filterMeta, len(fs))
	for _, f := range fs {
		if meta, err := decodeMeta(f.ProviderData); err == nil {
			m[f.ID] = meta
		}
	}
	b.ev.Lock()
	b.prevByID, b.byID = b.byID, m
	b.ev.Unlock()
	return nil
}
