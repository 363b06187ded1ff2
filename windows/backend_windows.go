//go:build windows

package windows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/tailscale/wf"
	xwindows "golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/windows/internal/wfptxn"
)

// Why github.com/tailscale/wf: the design named wireguard-windows' firewall
// bindings, but its tunnel/firewall package exports only a tunnel kill switch
// (EnableFirewall/DisableFirewall) and keeps every WFP call unexported, so it
// cannot express per-app filters. wf is the typed WFP library built the same
// way (sessions, providers, sublayers, rules with conditions, AppID,
// DropEvents). From wireguard-windows we use winipcfg, for the host's unicast
// addresses and their change notifications.

// Fixed identities of exewall's WFP objects: everything exewall adds lives
// under them, so Apply and Reset find exactly what is ours.
var (
	providerID = wf.ProviderID(xwindows.GUID{Data1: 0xa37cb7e5, Data2: 0x4767, Data3: 0x4f04, Data4: [8]byte{0xa8, 0x33, 0xa5, 0x2d, 0xf1, 0xea, 0x92, 0x07}})
	sublayerID = wf.SublayerID(xwindows.GUID{Data1: 0xe7124f1f, Data2: 0xe30d, Data3: 0x44c6, Data4: [8]byte{0xbd, 0xf3, 0xe5, 0xda, 0xfd, 0x4f, 0xdd, 0xa1}})
)

// sublayerWeight puts exewall's sublayer first. WFP evaluates every sublayer
// and a block wins over a permit, but a hard permit in a sublayer evaluated
// before ours could only be overridden by a callout veto.
const sublayerWeight = 0xffff

// Config configures a Backend.
type Config struct {
	Logger *slog.Logger // slog.Default() when nil
	// DetachOnClose removes exewall's filters when the backend closes;
	// otherwise they stay in force (persistent), like pinned links on Linux.
	DetachOnClose bool
	// PollInterval is how often WFP's drop events are read; default 2s.
	PollInterval time.Duration
}

// Backend is the engine.Backend for Windows: WFP filters at the ALE connect
// layers. Its objects are persistent (not tied to the WFP session), so
// enforcement survives a crash or stop of the service, as pinned programs do
// on Linux; Reset removes them.
type Backend struct {
	log    *slog.Logger
	self   string // exewall's own executable
	detach bool   // Close removes everything (--detach-on-exit)

	// mu serialises every use of sess: a WFP transaction spans the whole
	// session, so a drop-event poll must not run inside an apply.
	mu       sync.Mutex
	sess     *wf.Session
	policy   *engine.Policy // last applied; re-applied when host subnets change
	nets     []netip.Prefix
	byID     map[uint64]filterMeta // kernel filter id -> what it enforces
	prevByID map[uint64]filterMeta // the filters just replaced, for late events
	cursor   *dropCursor
	devices  map[string]string // drive -> NT device path
	counters engine.Counters
	perRule  map[string]engine.Counters
	lost     uint64
	pollErr  string

	out       chan engine.Violation
	netsDirty chan struct{}
	addrCB    *winipcfg.UnicastAddressChangeCallback
	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ engine.Backend  = (*Backend)(nil)
	_ engine.Syncer   = (*Backend)(nil)
	_ engine.Resetter = (*Backend)(nil)
)

// New opens a WFP session, makes sure exewall's provider and sublayer exist,
// and starts reading drop events and watching the host's addresses. It
// leaves the filters already in force untouched until the first Apply.
func New(ctx context.Context, opts Config) (*Backend, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	nets, err := hostUnicastNets()
	if err != nil {
		return nil, err
	}
	// Not Dynamic: a dynamic session deletes its objects when the process
	// exits, which would fail open whenever the service dies.
	sess, err := wf.New(&wf.Options{Name: "exewall", Description: "exewall per-executable firewall"})
	if err != nil {
		return nil, fmt.Errorf("open wfp engine (is the Base Filtering Engine running, and are we elevated?): %w", err)
	}
	b := &Backend{
		log:       opts.Logger,
		self:      self,
		detach:    opts.DetachOnClose,
		sess:      sess,
		nets:      nets,
		cursor:    newDropCursor(time.Now()),
		devices:   dosDevices(),
		perRule:   map[string]engine.Counters{},
		out:       make(chan engine.Violation, 1024),
		netsDirty: make(chan struct{}, 1),
	}
	if err := wfptxn.Do(sess, b.ensureObjects); err != nil {
		sess.Close()
		return nil, fmt.Errorf("create wfp provider and sublayer: %w", err)
	}
	// Filters left by a previous run are still enforcing; know them so
	// their drops are reported before the first Apply.
	if err := b.loadIDs(); err != nil {
		b.log.Warn("cannot map wfp filter ids; drops are not reported until the next apply", "err", err)
	}
	b.addrCB, err = winipcfg.RegisterUnicastAddressChangeCallback(func(winipcfg.MibNotificationType, *winipcfg.MibUnicastIPAddressRow) {
		select {
		case b.netsDirty <- struct{}{}:
		default:
		}
	})
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("watch host addresses: %w", err)
	}
	ctx, b.stop = context.WithCancel(context.WithoutCancel(ctx))
	b.wg.Add(2)
	go b.pollDrops(ctx, opts.PollInterval)
	go b.watchNets(ctx)
	return b, nil
}

// Name implements engine.Backend.
func (b *Backend) Name() string { return "wfp" }

// Violations implements engine.Backend. Only enforced denials appear: WFP
// reports drops, and an audited attempt is permitted (see docs/windows.md).
func (b *Backend) Violations() <-chan engine.Violation { return b.out }

// Apply implements engine.Backend: in one WFP transaction it deletes every
// filter in exewall's sublayer and adds the policy's filters.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applyLocked(p)
}

func (b *Backend) applyLocked(p *engine.Policy) error {
	fs, err := Translate(p, Host{Nets: b.nets, SelfExe: b.self})
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
		old, err := b.ourRules()
		if err != nil {
			return err
		}
		for _, r := range old {
			if err := b.sess.DeleteRule(r.ID); err != nil {
				return fmt.Errorf("delete filter %q: %w", r.Name, err)
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
func (b *Backend) compile(fs []Filter) ([]*wf.Rule, error) {
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
func (b *Backend) resolveAppIDs(fs []Filter) (map[string]string, error) {
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
		b.devices = dosDevices() // a drive may have been mounted since
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
		switch isUser := typ == xwindows.SidTypeUser; {
		case isGroup && isUser:
			return nil, fmt.Errorf("group: %q is a user account; use user:", acct)
		case !isGroup && !isUser:
			return nil, fmt.Errorf("user: %q is not a user account (a group?); use group:", acct)
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
func wfRule(f Filter, appID string, sd *xwindows.SECURITY_DESCRIPTOR) (*wf.Rule, error) {
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
	if f.Layer == LayerConnectV6 {
		r.Layer = wf.LayerALEAuthConnectV6
	}
	if f.Action == Block {
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
	switch {
	case f.PortLo == 0 && f.PortHi == 0:
	case f.PortLo == f.PortHi:
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldIPRemotePort, Op: wf.MatchTypeEqual, Value: f.PortLo})
	default:
		r.Conditions = append(r.Conditions, &wf.Match{Field: wf.FieldIPRemotePort, Op: wf.MatchTypeRange, Value: wf.Range{From: f.PortLo, To: f.PortHi}})
	}
	return r, nil
}

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

// ourRules lists the filters in exewall's sublayer or of its provider.
func (b *Backend) ourRules() ([]*wf.Rule, error) {
	all, err := b.sess.Rules()
	if err != nil {
		return nil, fmt.Errorf("list wfp filters: %w", err)
	}
	var ours []*wf.Rule
	for _, r := range all {
		if r.Sublayer == sublayerID || r.Provider == providerID {
			ours = append(ours, r)
		}
	}
	return ours, nil
}

func (b *Backend) loadIDs() error {
	rs, err := b.ourRules()
	if err != nil {
		return err
	}
	m := make(map[uint64]filterMeta, len(rs))
	for _, r := range rs {
		if meta, err := decodeMeta(r.ProviderData); err == nil {
			m[r.KernelID] = meta
		}
	}
	b.prevByID, b.byID = b.byID, m
	return nil
}

func (b *Backend) lookup(id uint64) (filterMeta, bool) {
	if m, ok := b.byID[id]; ok {
		return m, true
	}
	m, ok := b.prevByID[id]
	return m, ok
}

// pollDrops reads WFP's drop events and reports those of our block filters.
// WFP keeps them in a ring buffer with no subscription through wf, so the
// whole buffer is read each time and the cursor skips what was reported.
func (b *Backend) pollDrops(ctx context.Context, every time.Duration) {
	defer b.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.pollOnce()
	}
}

func (b *Backend) pollOnce() {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs, err := b.sess.DropEvents()
	if err != nil {
		if err.Error() != b.pollErr {
			b.log.Warn("read wfp drop events", "err", err)
			b.pollErr = err.Error()
		}
		return
	}
	b.pollErr = ""
	ds := make([]Drop, 0, len(evs))
	for _, e := range evs {
		ds = append(ds, Drop{Time: e.Timestamp, Proto: e.IPProtocol, Remote: e.RemoteAddr, AppID: e.AppID, FilterID: e.FilterID})
	}
	for _, d := range b.cursor.fresh(ds) {
		m, ok := b.lookup(d.FilterID)
		if !ok {
			continue // another provider's filter
		}
		v, ok := classify(d, m, b.appPath)
		if !ok {
			continue
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
}

func (b *Backend) appPath(id string) string { return appIDToPath(id, b.devices) }

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
		case <-time.After(time.Second):
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

// State implements engine.Backend from what is in the kernel.
func (b *Backend) State(ctx context.Context) (engine.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := engine.State{
		Backend:     b.Name(),
		AttachPoint: "WFP sublayer " + xwindows.GUID(sublayerID).String(),
		Counters:    b.counters,
		RuleCounter: make(map[string]engine.Counters, len(b.perRule)),
		EventsLost:  b.lost,
	}
	for k, v := range b.perRule {
		st.RuleCounter[k] = v
	}
	rs, err := b.ourRules()
	if err != nil {
		return st, err
	}
	rules, hooks := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		hooks["FWPM_LAYER_"+r.Layer.String()] = true
		if m, err := decodeMeta(r.ProviderData); err == nil && m.Rule != "" {
			rules[m.Rule] = true
		}
	}
	st.Rules = len(rules)
	for h := range hooks {
		st.Hooks = append(st.Hooks, h)
	}
	sort.Strings(st.Hooks)
	return st, nil
}

// Sync implements engine.Syncer: it compares the filters in exewall's
// sublayer with those the policy asks for (their specs and resolved app IDs)
// and re-applies the policy when they differ.
func (b *Backend) Sync(ctx context.Context, p *engine.Policy) ([]engine.Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, err := Translate(p, Host{Nets: b.nets, SelfExe: b.self})
	if err != nil {
		return nil, err
	}
	ids, err := b.resolveAppIDs(fs)
	if err != nil {
		return nil, err
	}
	want := map[string]string{}
	for _, f := range fs {
		want[f.String()] = ids[f.Exe]
	}
	var drifts []engine.Drift
	hasProv, hasSub, err := b.objects()
	if err != nil {
		return nil, err
	}
	if !hasProv || !hasSub {
		drifts = append(drifts, engine.Drift{What: "exewall's wfp provider or sublayer is missing"})
	}
	rs, err := b.ourRules()
	if err != nil {
		return nil, err
	}
	have := map[string]string{}
	foreign := 0
	for _, r := range rs {
		m, err := decodeMeta(r.ProviderData)
		if err != nil {
			foreign++
			continue
		}
		have[m.Spec] = m.AppID
	}
	if foreign > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d filters in exewall's sublayer were not added by exewall", foreign)})
	}
	var missing, extra int
	for spec, id := range want {
		got, ok := have[spec]
		switch {
		case !ok:
			missing++
		case got != id:
			drifts = append(drifts, engine.Drift{What: fmt.Sprintf("app id changed for %q: %s, was %s", spec, id, got)})
		}
	}
	for spec := range have {
		if _, ok := want[spec]; !ok {
			extra++
		}
	}
	if missing > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d wfp filters missing", missing)})
	}
	if extra > 0 {
		drifts = append(drifts, engine.Drift{What: fmt.Sprintf("%d unexpected wfp filters", extra)})
	}
	if len(drifts) == 0 {
		return nil, nil
	}
	if err := b.applyLocked(p); err != nil {
		return drifts, err
	}
	for i := range drifts {
		drifts[i].Repaired = true
	}
	return drifts, nil
}

// Reset implements engine.Resetter: in one transaction it deletes every
// filter in exewall's sublayer, the sublayer and the provider.
func (b *Backend) Reset(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := wfptxn.Do(b.sess, func() error {
		rs, err := b.ourRules()
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := b.sess.DeleteRule(r.ID); err != nil {
				return fmt.Errorf("delete filter %q: %w", r.Name, err)
			}
		}
		hasProv, hasSub, err := b.objects()
		if err != nil {
			return err
		}
		if hasSub {
			if err := b.sess.DeleteSublayer(sublayerID); err != nil {
				return fmt.Errorf("delete wfp sublayer: %w", err)
			}
		}
		if hasProv {
			if err := b.sess.DeleteProvider(providerID); err != nil {
				return fmt.Errorf("delete wfp provider: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset wfp: %w", err)
	}
	b.policy, b.byID, b.prevByID = nil, nil, nil
	return nil
}

// Close implements engine.Backend. The filters stay in force.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.stop()
		if b.addrCB != nil {
			if err := b.addrCB.Unregister(); err != nil {
				b.closeErr = fmt.Errorf("stop watching host addresses: %w", err)
			}
		}
		b.wg.Wait()
		if b.detach {
			if err := b.Reset(context.Background()); err != nil {
				b.closeErr = errors.Join(b.closeErr, err)
			}
		}
		b.mu.Lock()
		if err := b.sess.Close(); err != nil {
			b.closeErr = errors.Join(b.closeErr, fmt.Errorf("close wfp session: %w", err))
		}
		b.mu.Unlock()
		close(b.out)
	})
	return b.closeErr
}

// Checks reports, for `exewall doctor`, whether this process can manage WFP.
func Checks(ctx context.Context, cfg Config) []engine.Check {
	var cs []engine.Check
	elevated := xwindows.GetCurrentProcessToken().IsElevated()
	c := engine.Check{Name: "elevated", OK: elevated, Detail: "running with an elevated (administrator) token"}
	if !elevated {
		c.Detail = "not elevated: run from an elevated prompt, or as the exewall service"
	}
	cs = append(cs, c)
	s, err := wf.New(&wf.Options{Name: "exewall doctor", Dynamic: true})
	if err != nil {
		return append(cs, engine.Check{Name: "wfp", Detail: fmt.Sprintf("cannot open the WFP engine: %v", err)})
	}
	defer s.Close()
	cs = append(cs, engine.Check{Name: "wfp", OK: true, Detail: "filters at FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6, hard blocks in sublayer " + xwindows.GUID(sublayerID).String()})
	cs = append(cs, engine.Check{Name: "audit", OK: true, Detail: "audited attempts are permitted but not reported: WFP records drops, not permits (docs/windows.md)"})
	return cs
}

// Reset removes exewall's filters, sublayer and provider whatever else is
// installed; no daemon needs to run.
func Reset(ctx context.Context, cfg Config) error {
	b, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	rerr := b.Reset(ctx)
	return errors.Join(rerr, b.Close())
}
