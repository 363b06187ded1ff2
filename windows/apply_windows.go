//go:build windows

package windows

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tailscale/wf"
	xwindows "golang.org/x/sys/windows"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows/internal/wfptxn"
)

// Apply implements engine.Backend: in one WFP transaction it deletes every
// filter of exewall's provider and adds the policy's filters. WFP
// re-authorizes the flows already open (ALE reauthorization), so a
// connection the new policy forbids is cut, not only new ones.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applyLocked(p)
}

func (b *Backend) applyLocked(p *engine.Policy) error {
	fs, err := translate(p, machine{Nets: b.nets, SelfExe: b.self})
	if err != nil {
		return err
	}
	rules, err := b.compile(fs)
	if err != nil {
		return err
	}
	err = wfptxn.Do(b.sess, func() error {
		if err := b.ensureObjects(); err != nil {
			return err
		}
		old, err := b.ourFilters()
		if err != nil {
			return err
		}
		for _, f := range old {
			if err := b.sess.DeleteRule(wf.RuleID(f.Key)); err != nil {
				return fmt.Errorf("delete filter %q: %w", f.Name, err)
			}
		}
		for _, r := range rules {
			if err := b.sess.AddRule(r); err != nil {
				return fmt.Errorf("add filter %q: %w", r.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply wfp filters: %w", err)
	}
	b.policy = p.Clone()
	if err := b.loadIDs(); err != nil {
		// The policy is in force; only the reporting of its drops suffers.
		b.log.Warn("cannot map wfp filter ids; drops are not reported", "err", err)
	}
	return nil
}

// compile resolves app IDs and account SIDs and turns filters into wf rules.
func (b *Backend) compile(fs []filter) ([]*wf.Rule, error) {
	appIDs, err := b.resolveAppIDs(fs)
	if err != nil {
		return nil, err
	}
	sds := map[string]*xwindows.SECURITY_DESCRIPTOR{}
	rules := make([]*wf.Rule, 0, len(fs))
	for _, f := range fs {
		var sd *xwindows.SECURITY_DESCRIPTOR
		acct, isGroup := f.User, false
		if f.Group != "" {
			acct, isGroup = f.Group, true
		}
		if acct != "" {
			key := fmt.Sprint(isGroup, acct)
			if sd = sds[key]; sd == nil {
				if sd, err = accountMatch(acct, isGroup); err != nil {
					return nil, fmt.Errorf("rule %q: %w", f.Rule, err)
				}
				sds[key] = sd
			}
		}
		r, err := wfRule(f, appIDs[f.Exe], sd)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// resolveAppIDs maps each filter's executable path to its WFP app ID and
// refuses two rules whose paths name one app ID (C:\x and c:\X, or a path and
// its 8.3 short name).
func (b *Backend) resolveAppIDs(fs []filter) (map[string]string, error) {
	ids := map[string]string{}
	owner := map[string]string{}
	for _, f := range fs {
		if f.Exe == "" {
			continue
		}
		id, ok := ids[f.Exe]
		if !ok {
			var err error
			if id, err = b.appID(f.Exe); err != nil {
				return nil, fmt.Errorf("rule %q: %w", f.Rule, err)
			}
			ids[f.Exe] = id
		}
		if f.Rule == "" {
			continue // exewall's own filter
		}
		if other, dup := owner[id]; dup && other != f.Rule {
			return nil, fmt.Errorf("rules %q and %q name the same executable (%s)", other, f.Rule, id)
		}
		owner[id] = f.Rule
	}
	return ids, nil
}

// appID asks WFP for a file's app ID. For a file that does not exist yet it
// derives the ID WFP will compute once it does, so the rule is enforced from
// the moment the file appears (Sync re-resolves and repairs if the two
// differ).
func (b *Backend) appID(path string) (string, error) {
	id, err := wf.AppID(path)
	if err == nil {
		return id, nil
	}
	if isNotFound(err) {
		if id, ok := deriveAppID(path, b.devices); ok {
			return id, nil
		}
		b.setDevices(dosDevices()) // a drive may have been mounted since
		if id, ok := deriveAppID(path, b.devices); ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("app id of %s: %w", path, err)
}

func isNotFound(err error) bool {
	var errno xwindows.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch uint32(errno) {
	case uint32(xwindows.ERROR_FILE_NOT_FOUND), uint32(xwindows.ERROR_PATH_NOT_FOUND),
		0x80070002, 0x80070003: // the same as HRESULTs
		return true
	}
	return false
}

// accountMatch builds the ALE_USER_ID descriptor for an account name or SID.
func accountMatch(acct string, isGroup bool) (*xwindows.SECURITY_DESCRIPTOR, error) {
	var sid *xwindows.SID
	var err error
	if strings.HasPrefix(acct, "S-1-") {
		if sid, err = xwindows.StringToSid(acct); err != nil {
			return nil, fmt.Errorf("parse sid %q: %w", acct, err)
		}
	} else {
		var typ uint32
		if sid, _, typ, err = xwindows.LookupSID("", acct); err != nil {
			return nil, fmt.Errorf("look up account %q: %w", acct, err)
		}
		if err := checkAccountKind(acct, sid.String(), typ, isGroup); err != nil {
			return nil, err
		}
	}
	sddl, err := userMatchSDDL(sid.String())
	if err != nil {
		return nil, err
	}
	sd, err := xwindows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("security descriptor for %q: %w", acct, err)
	}
	return sd, nil
}

// wfRule turns one Filter into a persistent wf.Rule in our sublayer.
func wfRule(f filter, appID string, sd *xwindows.SECURITY_DESCRIPTOR) (*wf.Rule, error) {
	guid, err := xwindows.GenerateGUID()
	if err != nil {
		return nil, fmt.Errorf("generate filter guid: %w", err)
	}
	r := &wf.Rule{
		ID:           wf.RuleID(guid),
		Name:         f.Name,
		Description:  "exewall: " + f.String(),
		Layer:        wf.LayerALEAuthConnectV4,
		Sublayer:     sublayerID,
		Weight:       f.Weight,
		Action:       wf.ActionPermit,
		Persistent:   true,
		Provider:     providerID,
		ProviderData: metaOf(f, appID).encode(),
	}
	switch f.Layer {
	case layerConnectV6:
		r.Layer = wf.LayerALEAuthConnectV6
	case layerRecvV4:
		r.Layer = wf.LayerALEAuthRecvAcceptV4
	case layerRecvV6:
		r.Layer = wf.LayerALEAuthRecvAcceptV6
	}
	if f.Action == actionBlock {
		// A hard block: no later sublayer's permit can override it.
		r.Action, r.HardAction = wf.ActionBlock, true
	}
	if f.Exe != "" {
		if appID == "" {
			return nil, fmt.Errorf("filter %q: no app id for %s", f.Name, f.Exe)
		}
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldALEAppID, Op: wf.MatchTypeEqual, Value: appID})
	}
	if f.User != "" || f.Group != "" {
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldALEUserID, Op: wf.MatchTypeEqual, Value: sd})
	}
	if f.Remote.IsValid() && f.Remote.Bits() > 0 {
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldIPRemoteAddress, Op: wf.MatchTypeEqual, Value: f.Remote})
	}
	// Conditions on one field are ORed by WFP, across fields ANDed.
	for _, p := range f.Protos {
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldIPProtocol, Op: wf.MatchTypeEqual, Value: wf.IPProto(p)})
	}
	if c := portMatch(wf.FieldIPRemotePort, f.PortLo, f.PortHi); c != nil {
		r.Conditions = append(r.Conditions, c)
	}
	// At the ALE layers an ICMP flow's type is its local "port".
	if c := portMatch(wf.FieldIPLocalPort, f.LocalLo, f.LocalHi); c != nil {
		r.Conditions = append(r.Conditions, c)
	}
	return r, nil
}

func portMatch(field wf.FieldID, lo, hi uint16) *wf.Match {
	switch {
	case lo == 0 && hi == 0:
		return nil
	case lo == hi:
		return &wf.Match{Field: field, Op: wf.MatchTypeEqual, Value: lo}
	}
	return &wf.Match{Field: field, Op: wf.MatchTypeRange, Value: wf.Range{From: lo, To: hi}}
}
