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
	"sync"
	"time"

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
// way (sessions, providers, sublayers, rules with conditions, AppID). What wf
// gets wrong or lacks (listing one provider's filters, filter ids, drop
// events by subscription) is bound in internal/fwpm, whose layouts are
// checked against the SDK. From wireguard-windows we use winipcfg, for the
// host's unicast addresses and their change notifications.

// Fixed identities of exewall's WFP objects: everything exewall adds lives
// under them, so Apply and Reset find exactly what is ours.
var (
	providerID = wf.ProviderID(xwindows.GUID{Data1: 0xa37cb7e5, Data2: 0x4767, Data3: 0x4f04, Data4: [8]byte{0xa8, 0x33, 0xa5, 0x2d, 0xf1, 0xea, 0x92, 0x07}})
	sublayerID = wf.SublayerID(xwindows.GUID{Data1: 0xe7124f1f, Data2: 0xe30d, Data3: 0x44c6, Data4: [8]byte{0xbd, 0xf3, 0xe5, 0xda, 0xfd, 0x4f, 0xdd, 0xa1}})
)

// Config configures a Backend.
type Config struct {
	Logger *slog.Logger // slog.Default() when nil
	// DetachOnClose removes exewall's filters when the backend closes;
	// otherwise they stay in force (persistent), like pinned links on Linux.
	DetachOnClose bool
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
	// session.
	mu      sync.Mutex
	sess    *wf.Session
	engine  uintptr        // sess's engine handle, for internal/fwpm
	policy  *engine.Policy // last applied; re-applied when host subnets change
	nets    []netip.Prefix
	devices map[string]string // drive -> NT device path; written under mu and ev

	// ev guards what the drop-event reader shares with the rest: it never
	// waits for an apply.
	ev       sync.Mutex
	byID     map[uint64]filterMeta // kernel filter id -> what it enforces
	prevByID map[uint64]filterMeta // the filters just replaced, for late events
	counters engine.Counters
	perRule  map[string]engine.Counters
	lost     uint64

	out         chan engine.Violation
	drops       chan drop
	unsubscribe func() error
	netsDirty   chan struct{}
	addrCB      *winipcfg.UnicastAddressChangeCallback
	stop        context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

var (
	_ engine.Backend  = (*Backend)(nil)
	_ engine.Syncer   = (*Backend)(nil)
	_ engine.Resetter = (*Backend)(nil)
)

// New opens a WFP session, makes sure exewall's provider and sublayer exist,
// subscribes to drop events and watches the host's addresses. It leaves the
// filters already in force untouched until the first Apply.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
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
	h, err := wfptxn.EngineHandle(sess)
	if err != nil {
		sess.Close()
		return nil, err
	}
	b := &Backend{
		log:       log,
		self:      self,
		detach:    cfg.DetachOnClose,
		sess:      sess,
		engine:    h,
		nets:      nets,
		devices:   dosDevices(),
		perRule:   map[string]engine.Counters{},
		out:       make(chan engine.Violation, 1024),
		drops:     make(chan drop, 4096),
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
	if b.unsubscribe, err = subscribeDrops(b.engine, b.drops, &b.ev, &b.lost); err != nil {
		sess.Close()
		return nil, err
	}
	b.addrCB, err = winipcfg.RegisterUnicastAddressChangeCallback(func(winipcfg.MibNotificationType, *winipcfg.MibUnicastIPAddressRow) {
		select {
		case b.netsDirty <- struct{}{}:
		default:
		}
	})
	if err != nil {
		b.unsubscribe()
		sess.Close()
		return nil, fmt.Errorf("watch host addresses: %w", err)
	}
	ctx, b.stop = context.WithCancel(context.WithoutCancel(ctx))
	b.wg.Add(2)
	go b.reportDrops(ctx)
	go b.watchNets(ctx)
	return b, nil
}

// Name implements engine.Backend.
func (b *Backend) Name() string { return "wfp" }

// Violations implements engine.Backend. Only enforced denials appear: WFP
// reports drops, and an audited attempt is permitted (see docs/windows.md).
func (b *Backend) Violations() <-chan engine.Violation { return b.out }

// State implements engine.Backend from what is in the kernel.
func (b *Backend) State(ctx context.Context) (engine.State, error) {
	st := engine.State{
		Backend:     b.Name(),
		AttachPoint: "WFP sublayer " + xwindows.GUID(sublayerID).String(),
	}
	b.ev.Lock()
	st.Counters, st.EventsLost = b.counters, b.lost
	st.RuleCounter = make(map[string]engine.Counters, len(b.perRule))
	for k, v := range b.perRule {
		st.RuleCounter[k] = v
	}
	b.ev.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, err := b.ourFilters()
	if err != nil {
		return st, err
	}
	rules, hooks := map[string]bool{}, map[string]bool{}
	for _, f := range fs {
		hooks["FWPM_LAYER_"+wf.LayerID(f.Layer).String()] = true
		if m, err := decodeMeta(f.ProviderData); err == nil && m.Rule != "" {
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

// Close implements engine.Backend. The filters stay in force unless the
// backend was told to detach.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		if err := b.unsubscribe(); err != nil {
			b.closeErr = err
		}
		b.stop()
		if b.addrCB != nil {
			if err := b.addrCB.Unregister(); err != nil {
				b.closeErr = errors.Join(b.closeErr, fmt.Errorf("stop watching host addresses: %w", err))
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

// settle is how long host address changes are let settle before a
// re-apply.
const settle = time.Second
