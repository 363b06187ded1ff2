//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// Config says where and how to enforce.
type Config struct {
	// Cgroup is the cgroup v2 directory to attach to; "" means the root of
	// the discovered cgroup v2 mount. Tests pass a scratch cgroup.
	Cgroup string
	// PinDir holds the pinned links, programs and maps; "" means DefaultPinDir.
	PinDir string
	// RingBufSize is the event ring buffer size in bytes (a power of two,
	// multiple of the page size); 0 means 1 MiB.
	RingBufSize uint32
	// DetachOnClose removes everything from the kernel on Close instead of
	// leaving enforcement in place.
	DetachOnClose bool
	// WatchInterval is how often executables and cgroups are re-resolved so
	// rules follow files that appear or are replaced; 0 means one second.
	WatchInterval time.Duration
	// Logger receives warnings and notices; nil means slog.Default().
	Logger *slog.Logger
}

type hook struct {
	name   string
	attach ebpf.AttachType
	prog   func(*datapathObjects) *ebpf.Program
}

var hooks = []hook{
	{"connect4", ebpf.AttachCGroupInet4Connect, func(o *datapathObjects) *ebpf.Program { return o.ExewallConnect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(o *datapathObjects) *ebpf.Program { return o.ExewallConnect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(o *datapathObjects) *ebpf.Program { return o.ExewallSendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(o *datapathObjects) *ebpf.Program { return o.ExewallSendmsg6 }},
	{"sock_create", ebpf.AttachCGroupInetSockCreate, func(o *datapathObjects) *ebpf.Program { return o.ExewallSockCreate }},
}

// Backend is the eBPF engine.Backend.
type Backend struct {
	cfg        Config
	log        *slog.Logger
	cgroupPath string
	cgroupID   uint64
	cgroupRoot string // the cgroup v2 mount, for cgroup: rules
	objs       datapathObjects
	sized      sizedMaps      // the maps sized to the policy, in objs' outer arrays (sized.go)
	counters   *counterChunks // the counters' chunks in place (counters.go)
	resolver   *resolver      // the one identity iterator and cache: Identify and Apply share it
	exes       *exeWatch      // what exe paths resolved to, while inotify sees no change
	btf        *btf.Cache     // the kernel's parsed BTF while New loads objects, then nil
	ticks      uint64         // watch intervals so far
	ncpu       int

	mu         sync.Mutex
	links      map[string]link.Link
	policy     *engine.Policy
	ids        identities
	places     statCache[place] // where each exe path lives
	slots      *slotIndex       // rule name -> counter slot, for the rules in force
	slotName   slotNames        // counter slot -> rule name, kept after a rule goes until the slot is reused
	nextSlot   uint32
	freshSlots []uint32     // slots allocated by the apply in progress, in that order
	roomAhead  <-chan error // makeRoomAhead's growth in progress (ruleout.go)
	// aheadChunks records the counter chunks makeRoomAhead put in place
	// (set by its goroutine before it reports on roomAhead).
	aheadChunks func()
	slotUndo    []slotUndo      // and how to take them back if it fails
	retired     engine.Counters // what removed rules counted: totals never go backwards
	rules       slotRuleTable   // the rules in force by slot (shared with the name snapshot)
	gens        [2]*generation  // what each generation holds; nil = unknown
	pair        *pairDiff       // where gens differ, after an incremental apply (incremental.go)
	repin       bool            // maps are fresh (old pins incompatible): pin after first apply
	hostNets    []netip.Prefix
	local       map[datapathLocalKey]uint8 // what local_nets holds

	exec     execwatchObjects
	execLink link.Link // nil when the kernel refuses tp_btf
	// identLinks are the other identity hooks (fork, exit, loader), by name.
	identLinks map[string]link.Link
	// In an upgrade to another map layout (migrate.go), the older daemon's
	// identity hooks by name, kept running beside ours until the cgroup
	// hooks switch to our maps, and its identity maps, copied once ours run.
	oldIdentLinks map[string]link.Link
	oldIdentMaps  map[string]*ebpf.Map
	// taskStorage is 1 when the cgroup programs keep identities and the rule
	// cache in task storage, 0 when this kernel refuses that (before 6.16)
	// and identities are kept by thread group id.
	taskStorage uint8
	socks       socketsObjects
	sockIter    []*link.Iter     // socks tcp, socks udp, destroy tcp, destroy udp; nil when refused
	optional    map[string]error // optional hooks that could not load, and why
	adopted     []string         // objects whose pinned programs this start adopted (adopt.go)
	progPins    map[string]*ebpf.Program
	mapIDs      map[*ebpf.Map]ebpf.MapID // kernel ids of maps, while New adopts (adopt.go)
	idName      map[ebpf.MapID]string    // kernel names by id, likewise
	loadMu      sync.Mutex               // adopted, progPins, mapIDs, idName while New loads objects concurrently
	early       *optionalLoad            // optional objects loading beside the datapath's programs (load)

	guard      guardObjects // source-route, ping and accepted-socket guards (guard.go)
	guardOK    bool
	guardLinks map[string]link.Link
	sweepErr   error // the last held-socket sweep that could not finish

	// DNS names (dns.go, dns_bind.go, dns_origin.go).
	dnsObjs  dnsObjects
	dnsOK    bool
	dnsLinks map[string]link.Link
	origin   *diag               // sock_diag, once a forwarder is set
	fwd      forwarder           // where the forwarder listens
	trusted  []netip.AddrPort    // the trusted resolvers in force
	bindMu   sync.RWMutex        // bound: written with mu held too
	bound    map[bindKey]bindRec // name bindings in force
	unbound  []droppedBind       // bindings the apply under way dropped (dns_bind.go)
	// inbound: the ingress judgement and its creator records (inbound.go)
	inbound      inboundObjects
	inboundOK    bool
	inboundLinks map[string]link.Link

	lock       *pinLock      // one daemon per pin dir, held for the backend's life
	grace      chan struct{} // closed when the last switch's grace period is over
	closed     bool
	names      atomic.Pointer[nameSnapshot]
	reader     *ringbuf.Reader
	violations chan engine.Violation
	queue      violationQueue // events on their way to violations (events.go)
	dropped    uint64         // events read but not delivered (consumer too slow)
	done       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// New loads the datapath, adopting pinned maps and links left by an earlier
// run so enforcement never lapses. Nothing new is attached until the first
// Apply has filled the maps.
func New(ctx context.Context, cfg Config) (_ *Backend, retErr error) {
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir
	}
	if cfg.RingBufSize == 0 {
		// 1 MiB holds ~8,700 events (120 bytes with the header). The kernel
		// folds repeats of an attempt into one event a second (event_gates),
		// so only that many distinct (process, rule, destination) attempts
		// made while the reader is held up fill it, and what does not fit
		// is counted (events_lost), never the verdict. The pages are the
		// daemon's kernel memory from the start: 4 MiB was a sixth of the
		// 25 MiB a daemon with no rules may take.
		cfg.RingBufSize = 1 << 20
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, links: map[string]link.Link{}, places: statCache[place]{},
		nextSlot: 1, local: map[datapathLocalKey]uint8{}, violations: make(chan engine.Violation, violationChan),
		done: make(chan struct{}), queue: violationQueue{wake: make(chan struct{}, 1)}}
	b.slots = newSlotIndex(&b.slotName)

	root, err := cgroupMount()
	if err != nil {
		return nil, err
	}
	b.cgroupRoot = root
	b.cgroupPath = cfg.Cgroup
	if b.cgroupPath == "" {
		b.cgroupPath = root
	}
	if b.cgroupID, err = cgroupID(b.cgroupPath); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", b.cgroupPath, err)
	}
	if b.ncpu, err = ebpf.PossibleCPU(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise memlock limit: %w", err)
	}
	if err := ensureBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	if err := pinDirCheck(cfg.PinDir); err != nil {
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	// One daemon per pin dir: a second one would fight the first over the
	// same maps and links.
	lock, err := lockPinDir(cfg.PinDir)
	if err != nil {
		return nil, err
	}
	b.lock = lock
	defer func() {
		if retErr != nil {
			lock.Close()
		}
	}()
	// A first start that fails must not leave half a set of pins behind.
	entries, _ := os.ReadDir(cfg.PinDir)
	fresh := len(entries) == 0
	if fresh {
		defer func() {
			if b.objs.Active == nil || retErr != nil {
				resetPins(cfg.PinDir)
			}
		}()
	}
	// One parse of the kernel's BTF serves every object loaded here; it is
	// dropped once they are (tens of MiB a daemon has no use for later).
	b.btf = btf.NewCache()
	defer func() { b.btf, b.mapIDs, b.idName = nil, nil, nil }()
	// Independent of the datapath: the identity iterator (it shares no
	// map) and the dynamic loaders' paths (files read) are found beside
	// its load.
	resolved := make(chan struct{})
	go func() {
		defer close(resolved)
		b.resolver = newResolver(disabledByTest("iter"), func(spec *ebpf.CollectionSpec, objs *fileidObjects) error {
			return b.loadObjects("fileid", _FileidBytes, spec, objs, &ebpf.CollectionOptions{})
		})
	}()
	loaders := make(chan []string, 1)
	go func() { loaders <- loaderPaths() }()
	t0 := time.Now()
	if err := b.load(); err != nil {
		<-resolved
		b.resolver.Close()
		return nil, err
	}
	if fresh && !b.repin {
		// New maps: both generations are known to be empty, so no apply
		// has to scan them.
		b.gens = [2]*generation{{rules: &slotRules{}}, {rules: &slotRules{}}}
	}
	t1 := time.Now()
	b.loadOptional(b.early)
	b.early = nil
	<-resolved
	t2 := time.Now()
	b.exes = newExeWatch()
	if b.resolver.fallback != nil {
		b.optional["iter"] = b.resolver.fallback
		b.log.Warn("executable identity", "err", b.resolver.fallback)
	}
	if err := b.writeLoaders(<-loaders); err != nil {
		b.log.Warn("dynamic loaders not recognised", "err", err)
	}
	if err := b.restoreSlots(); err != nil {
		b.Close()
		return nil, err
	}
	// Events already in the ring buffer (attempts made while no daemon ran)
	// are read at once: name their rules from the pinned slot names now.
	b.names.Store(&nameSnapshot{slotName: b.slotName.view()})
	if b.hasPinnedLinks() && !b.repin {
		// A previous daemon left enforcement in place: take it over now, the
		// new programs read the very maps the old ones did. (With an older
		// map layout the links keep the old programs and maps until the
		// first Apply has filled the new ones.)
		if err := b.attach(); err != nil {
			b.Close()
			return nil, err
		}
	}
	if b.reader, err = ringbuf.NewReader(b.objs.Events); err != nil {
		b.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	if err := b.startLocalNets(); err != nil {
		b.Close()
		return nil, err
	}
	b.log.Debug("datapath loaded", "datapath", t1.Sub(t0), "optional hooks", t2.Sub(t1), "rest", time.Since(t2), "adopted", b.adopted)
	b.wg.Add(3)
	go b.readEvents()
	go b.forwardViolations()
	go b.watch()
	return b, nil
}

func (b *Backend) load() error {
	spec, err := loadDatapath()
	if err != nil {
		return fmt.Errorf("load datapath spec: %w", err)
	}
	spec.Maps["events"].MaxEntries = b.cfg.RingBufSize
	for _, m := range spec.Maps {
		if m.Name != ".bss" && m.Name != ".rodata" && m.Name != ".data" {
			m.Pinning = ebpf.PinByName
		}
	}
	b.taskStorage = 1
	if forceTgidIdentities {
		b.taskStorage = 0
	}
	fullIdents := sizeTgidIdents(spec, b.cfg.PinDir, b.taskStorage, 0)
	if specHook != nil {
		specHook(spec)
	}
	old, changed := pinnedIncompatible(spec, b.cfg.PinDir)
	defer func() {
		for _, m := range old {
			m.Close()
		}
	}()
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}, Cache: b.btf}
	if changed {
		// Pins from an older map layout: load fresh maps, carry the old
		// entries over, and swap programs and pins at the first Apply (see
		// migrate.go).
		b.log.Info("pinned maps have an older layout; migrating their entries")
		b.repin = true
		opts.Maps.PinPath = ""
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	if err := spec.Variables["use_task_storage"].Set(b.taskStorage); err != nil {
		return err
	}
	// The policy maps' hashes and counter chunks are put in place as soon
	// as the outer maps exist: on a fresh start while the programs are
	// verified (loadObjectsThen).
	// So are the optional objects that need only the datapath's maps
	// (startOptional), unless the verifier may still refuse the datapath
	// task storage (before 6.16): they would use its first maps, and load
	// again after.
	startEarly := b.taskStorage == 1 && specHook == nil && kernelAtLeast(6, 16)
	policyMaps := func(maps map[string]*ebpf.Map) error {
		if startEarly && b.early == nil {
			repl := map[string]*ebpf.Map{}
			for name, m := range maps {
				if !dataSection(name) {
					repl[name] = m
				}
			}
			b.early = b.startOptional(repl)
		}
		return b.openPolicyMaps(spec, maps)
	}
	loadAll := func() error {
		var err error
		if changed {
			if err = spec.LoadAndAssign(&b.objs, opts); err == nil {
				if err = policyMaps(objectMaps(&b.objs)); err != nil {
					b.objs.Close()
				}
			}
		} else {
			err = b.loadObjectsThen("datapath", _DatapathBytes, spec, &b.objs, opts, policyMaps, b.cfg.RingBufSize, b.taskStorage)
		}
		if err != nil {
			if b.early != nil {
				b.dropOptional(b.early)
				b.early = nil
			}
			b.counters.close()
			b.counters = nil
			b.sized.reset()
		}
		return err
	}
	err = loadAll()
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && taskStorageRefused(ve) {
		// Cgroup programs may not use task storage here: keep identities
		// by thread group id, without the per-thread rule cache.
		b.log.Info("task storage unavailable to cgroup programs; identities kept by thread group id")
		b.log.Debug("the verifier's refusal", "log", fmt.Sprintf("%+v", ve))
		b.taskStorage = 0
		sizeTgidIdents(spec, opts.Maps.PinPath, 0, fullIdents)
		if err := spec.Variables["use_task_storage"].Set(b.taskStorage); err != nil {
			return err
		}
		err = loadAll()
	}
	if err != nil {
		if errors.As(err, &ve) {
			b.log.Error("the verifier refused the datapath", "log", fmt.Sprintf("%+v", ve))
		}
		return notSupported("load datapath", err)
	}
	if changed {
		// Identities are copied only once our identity hooks run beside the
		// older ones (carryIdentities): copied now, a process that execs
		// before our hooks attach would keep the record it inherited.
		b.oldIdentMaps = map[string]*ebpf.Map{}
		for _, name := range identityMaps {
			if m := old[name]; m != nil {
				b.oldIdentMaps[name] = m
				delete(old, name)
			}
		}
		targets, err := b.migrationTargets(old)
		if err != nil {
			b.counters.close()
			b.sized.close()
			b.objs.Close()
			return err
		}
		copied, errs := copyMaps(old, targets)
		if from := old["counters"]; from != nil {
			n, err := b.counters.copyFrom(from)
			if err != nil {
				errs = append(errs, fmt.Errorf("migrate map counters: %w", err))
			}
			copied["counters"] = n
		}
		for _, err := range errs {
			b.log.Warn("pinned map not fully migrated", "err", err)
		}
		b.log.Info("migrated the entries of the pinned maps", "entries", copied)
	}
	return nil
}

// kernelAtLeast says whether the running kernel's release is at least
// major.minor (false when it cannot tell).
func kernelAtLeast(major, minor int) bool {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return false
	}
	var ma, mi int
	if n, _ := fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &ma, &mi); n != 2 {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// forceTgidIdentities makes New keep identities by thread group id even
// where task storage is available: the tests exercise the fallback with it.
var forceTgidIdentities bool

// taskStorageRefused says whether the verifier refused the datapath for its
// task storage calls (cgroup programs before 6.16): its verdict line names
// the helper. Not any mention of it: the instruction dump of a program
// refused for another reason (too large) shows the calls too, and falling
// back for that would hide the real error behind a second, slower load.
func taskStorageRefused(ve *ebpf.VerifierError) bool {
	for _, l := range ve.Log {
		refused := strings.Contains(l, "unknown func") || strings.Contains(l, "cannot use helper")
		if refused && (strings.Contains(l, "task_storage") || strings.Contains(l, "#156") || strings.Contains(l, "#157")) {
			return true
		}
	}
	return false
}

// specHook, when set (tests), edits the datapath's spec before it loads:
// an upgrade test loads an older layout with it.
var specHook func(*ebpf.CollectionSpec)

// Name implements engine.Backend.
func (b *Backend) Name() string { return "ebpf" }

// State implements engine.Backend.
// Describe is State without the counters: the backend's name, attach
// point and active hooks.
func (b *Backend) Describe() engine.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := engine.State{Backend: b.Name(), AttachPoint: b.cgroupPath, Hooks: b.activeHooks()}
	if b.policy != nil {
		st.Rules = len(b.policy.Rules)
	}
	return st
}

func (b *Backend) State(ctx context.Context) (engine.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := engine.State{Backend: b.Name(), AttachPoint: b.cgroupPath, RuleCounter: map[string]engine.Counters{}}
	st.Hooks = b.activeHooks()
	if b.sweepErr != nil {
		st.SweepError = b.sweepErr.Error()
	}
	if b.policy != nil {
		st.Rules = len(b.policy.Rules)
	}
	sums, err := b.readCounters()
	if err != nil {
		return st, err
	}
	for slot, c := range sums {
		name, ok := b.slotName.get(slot)
		if slot != 0 && (!ok || b.slots.at(name) != slot) {
			continue
		}
		st.RuleCounter[name] = c
		st.Counters = st.Counters.Add(c)
	}
	st.Counters = st.Counters.Add(b.retired)
	lost, err := b.kernelLost()
	if err != nil {
		return st, err
	}
	st.EventsLost = lost + b.droppedEvents()
	return st, nil
}

func (b *Backend) kernelLost() (uint64, error) {
	vals := make([]uint64, b.ncpu)
	if err := b.objs.EventsLost.Lookup(uint32(0), &vals); err != nil {
		return 0, fmt.Errorf("read lost events: %w", err)
	}
	var n uint64
	for _, v := range vals {
		n += v
	}
	return n, nil
}

// Violations implements engine.Backend.
func (b *Backend) Violations() <-chan engine.Violation { return b.violations }

// HostNets returns the on-link subnets local-only currently allows.
func (b *Backend) HostNets() []netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.hostNets)
}

// Close implements engine.Backend. Enforcement stays in the kernel (pinned)
// unless the backend was configured to detach.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.done)
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.waitGrace()
		if b.reader != nil {
			b.reader.Close()
		}
		b.wg.Wait()
		if b.cfg.DetachOnClose {
			err = b.reset()
		}
		// Stopped before the first apply of an upgrade: the older
		// programs still judge with the older maps, so their identity
		// hooks go back on the pins.
		b.endOldIdentity(b.repin && !b.cfg.DetachOnClose)
		for _, l := range b.links {
			l.Close()
		}
		if b.execLink != nil {
			b.execLink.Close()
		}
		for _, l := range b.identLinks {
			l.Close()
		}
		for _, it := range b.sockIter {
			it.Close()
		}
		b.closeGuard(false)
		b.closeDNS(false)
		b.closeInbound(false)
		b.exec.Close()
		b.socks.Close()
		b.guard.Close()
		b.counters.close()
		b.sized.close()
		b.objs.Close()
		if b.resolver != nil {
			b.resolver.Close()
		}
		if b.exes != nil {
			b.exes.close()
		}
		b.flushViolations()
		close(b.violations)
		b.lock.Close()
	})
	return err
}
