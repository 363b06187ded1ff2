//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
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
	// multiple of the page size); 0 means 4 MiB.
	RingBufSize uint32
	// DetachOnClose removes everything from the kernel on Close instead of
	// leaving enforcement in place.
	DetachOnClose bool
	// WatchInterval is how often executables and cgroups are re-resolved so
	// rules follow files that appear or are replaced; 0 means one second.
	WatchInterval time.Duration
	Logger        *slog.Logger
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
	resolver   *KernelResolver
	ncpu       int

	mu         sync.Mutex
	links      map[string]link.Link
	policy     *engine.Policy
	ids        identities
	seen       map[string][]engine.FileID // every identity an exe rule has had
	places     map[string]cachedPlace     // where each exe path lives, cached by stat key
	slots      map[string]uint32          // rule name -> counter slot
	slotName   map[uint32]string          // counter slot -> rule name, kept after a rule goes until the slot is reused
	nextSlot   uint32
	freshSlots map[uint32]bool // slots allocated by the apply in progress
	byName     map[string]*engine.Rule
	gens       [2]*compiled // what each generation holds; nil = unknown
	repin      bool         // maps are fresh (old pins incompatible): pin after first apply
	hostNets   []netip.Prefix
	local      map[datapathLocalKey]uint8 // what local_nets holds

	exec     execwatchObjects
	execLink link.Link // nil when the kernel refuses tp_btf
	socks    socketsObjects
	sockIter []*link.Iter     // socks tcp, socks udp, destroy tcp, destroy udp; nil when refused
	optional map[string]error // optional hooks that could not load, and why

	lock       *pinLock      // one daemon per pin dir, held for the backend's life
	grace      chan struct{} // closed when the last switch's grace period is over
	applySeq   uint64        // applies so far; the background clear checks it
	closed     bool
	names      atomic.Pointer[nameSnapshot]
	reader     *ringbuf.Reader
	violations chan engine.Violation
	dropped    uint64 // events read but not delivered (consumer too slow)
	done       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// New loads the datapath, adopting pinned maps and links left by an earlier
// run so enforcement never lapses. Nothing new is attached until the first
// Apply has filled the maps.
func New(cfg Config) (_ *Backend, retErr error) {
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir
	}
	if cfg.RingBufSize == 0 {
		cfg.RingBufSize = 1 << 22
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, links: map[string]link.Link{}, places: map[string]cachedPlace{}, seen: map[string][]engine.FileID{},
		slots: map[string]uint32{}, slotName: map[uint32]string{}, nextSlot: 1, freshSlots: map[uint32]bool{}, byName: map[string]*engine.Rule{}, local: map[datapathLocalKey]uint8{}, violations: make(chan engine.Violation, violationBuffer),
		done: make(chan struct{})}

	root, err := CgroupMount()
	if err != nil {
		return nil, err
	}
	b.cgroupRoot = root
	b.cgroupPath = cfg.Cgroup
	if b.cgroupPath == "" {
		b.cgroupPath = root
	}
	if b.cgroupID, err = CgroupID(b.cgroupPath); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", b.cgroupPath, err)
	}
	if b.ncpu, err = ebpf.PossibleCPU(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise memlock limit: %w", err)
	}
	if err := EnsureBPFFS(cfg.PinDir); err != nil {
		return nil, err
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
	if entries, _ := os.ReadDir(cfg.PinDir); len(entries) == 0 {
		defer func() {
			if b.objs.Active == nil || retErr != nil {
				resetPins(cfg.PinDir)
			}
		}()
	}
	if err := b.load(); err != nil {
		return nil, err
	}
	b.loadOptional()
	b.resolver = NewKernelResolver()
	if b.resolver.Fallback != nil {
		b.log.Warn("executable identity", "err", b.resolver.Fallback)
	}
	if err := b.restoreSlots(); err != nil {
		b.Close()
		return nil, err
	}
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
	b.wg.Add(2)
	go b.readEvents()
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
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: b.cfg.PinDir}}
	err = spec.LoadAndAssign(&b.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pins from an older map layout: load fresh maps, fill them on the
		// first Apply, then swap programs and pins (no gap: the old programs
		// keep judging with the old maps until their links are updated).
		b.log.Info("pinned maps have an older layout; migrating", "err", err)
		b.repin = true
		opts.Maps.PinPath = ""
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
		err = spec.LoadAndAssign(&b.objs, opts)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load datapath: %+v", ve)
		}
		return fmt.Errorf("load datapath: %w", err)
	}
	return nil
}

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
			return fmt.Errorf("attach %s to %s: %w", h.name, b.cgroupPath, err)
		}
		if err := l.Pin(pin); err != nil {
			l.Close()
			return fmt.Errorf("pin %s link (a bpf_link is needed so enforcement outlives the daemon): %w", h.name, err)
		}
		b.links[h.name] = l
	}
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

// Name implements engine.Backend.
func (b *Backend) Name() string { return "ebpf" }

// AttachPoint is the cgroup directory the programs are attached to.
func (b *Backend) AttachPoint() string { return b.cgroupPath }

// PinDir is where links, programs and maps are pinned.
func (b *Backend) PinDir() string { return b.cfg.PinDir }

// Apply implements engine.Backend: the policy is written to the idle
// generation, the generation word is flipped, and only after an RCU grace
// period (no program still reads the old generation) is the old one cleared.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ids, err := b.resolve(p)
	if err != nil {
		return err
	}
	return b.applyLocked(p.Clone(), ids)
}

func (b *Backend) resolve(p *engine.Policy) (identities, error) {
	ids := identities{exe: map[string][]engine.FileID{}, places: map[string]place{}, cgroups: map[string]uint64{}, uids: map[string]uint32{}, gids: map[string]uint32{}}
	var paths []string
	for _, r := range p.Rules {
		if r.Exe != "" {
			paths = append(paths, r.Exe)
		}
	}
	found, err := b.identifyCached(paths, ids.places)
	if err != nil {
		return ids, err
	}
	for _, path := range paths {
		// Keep every identity the path has had while the rule lives: a
		// process still running a replaced binary stays covered.
		known := slices.Clone(b.seen[path])
		if id, ok := found[path]; ok && !slices.Contains(known, id) {
			known = append(known, id)
		}
		ids.exe[path] = known
	}
	for _, r := range p.Rules {
		switch {
		case r.Cgroup != "":
			c := engine.CleanCgroup(r.Cgroup)
			if id, err := CgroupID(filepath.Join(b.cgroupRoot, c)); err == nil {
				ids.cgroups[c] = id
			}
		case r.User != "":
			uid, err := engine.LookupUID(r.User)
			if err != nil {
				return ids, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			ids.uids[r.User] = uid
		case r.Group != "":
			gid, err := engine.LookupGID(r.Group)
			if err != nil {
				return ids, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			ids.gids[r.Group] = gid
		}
	}
	return ids, nil
}

// slotFor returns the counter slot of a rule name, allocating slots in
// increasing order so that a slot freed by a removed rule is not handed to
// another one while events naming it may still be in flight.
func (b *Backend) slotFor(name string) uint32 {
	if s, ok := b.slots[name]; ok {
		return s
	}
	for {
		s := b.nextSlot
		b.nextSlot++
		if b.nextSlot > maxRules {
			b.nextSlot = 1
		}
		if old, used := b.slotName[s]; used {
			if _, live := b.slots[old]; live {
				continue
			}
		}
		b.slots[name] = s
		b.slotName[s] = name
		b.freshSlots[s] = true
		return s
	}
}

func (b *Backend) activeGen() (uint32, error) {
	var gen uint32
	if err := b.objs.Active.Lookup(uint32(0), &gen); err != nil {
		return 0, fmt.Errorf("read active generation: %w", err)
	}
	return gen & 1, nil
}

func (b *Backend) applyLocked(p *engine.Policy, ids identities) error {
	cur, err := b.activeGen()
	if err != nil {
		return err
	}
	next := cur ^ 1
	slotsBefore, namesBefore, nextBefore := maps.Clone(b.slots), maps.Clone(b.slotName), b.nextSlot
	restore := func() {
		b.slots, b.slotName, b.nextSlot = slotsBefore, namesBefore, nextBefore
		clear(b.freshSlots)
	}
	c, err := compile(p, next, ids, b.slotFor)
	if err != nil {
		restore()
		return err
	}
	fail := func(err error) error {
		restore()
		b.clearGen(next) // best effort; the active generation was never touched
		return err
	}
	// The idle generation may still be read by programs that started before
	// the last switch: wait for that switch's grace period, then clear it.
	b.waitGrace()
	if err := b.clearGen(next); err != nil {
		return fail(err)
	}
	b.gens[next] = c
	if err := b.writeGen(c, next); err != nil {
		return fail(err)
	}
	// Events of the new generation may be read the moment it is active:
	// publish its names first (old ones kept for events still in flight).
	merged := maps.Clone(b.byName)
	for i := range p.Rules {
		merged[p.Rules[i].Name] = &p.Rules[i]
	}
	b.names.Store(&nameSnapshot{slotName: maps.Clone(b.slotName), byName: merged})
	if err := b.objs.Active.Update(uint32(0), next, ebpf.UpdateAny); err != nil {
		return fail(fmt.Errorf("switch generation: %w", err))
	}
	// The new policy is in force now. The old generation is cleared by the
	// next apply, after an RCU grace period that runs in the background, so
	// no caller waits for it.
	grace := make(chan struct{})
	b.grace = grace
	b.applySeq++
	seq := b.applySeq
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		waitForReaders()
		close(grace)
		// Clear the old generation now, unless another apply has started
		// using it meanwhile: maps hold only the policy in force.
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.applySeq == seq && !b.closed {
			if err := b.clearGen(cur); err != nil {
				b.log.Warn("clear old policy generation", "err", err)
			}
		}
	}()
	b.dropUnusedSlots(c)
	if b.repin || len(b.links) < len(hooks) {
		if err := b.attach(); err != nil {
			return err
		}
	}
	if b.repin {
		if err := b.pinMaps(); err != nil {
			return err
		}
		b.repin = false
	}
	clear(b.freshSlots) // written: later applies must not zero them again
	b.policy, b.ids = p, ids
	b.pruneLearned(ids)
	if n, err := b.sweepHeldSockets(c, p, next); err != nil && !errors.Is(err, errNoIters) {
		b.log.Warn("re-judge held sockets", "err", err)
	} else if n > 0 {
		b.log.Info("destroyed held sockets the policy now denies", "count", n)
	}
	b.byName = make(map[string]*engine.Rule, len(p.Rules))
	for i := range p.Rules {
		b.byName[p.Rules[i].Name] = &p.Rules[i]
	}
	for path, known := range ids.exe {
		b.seen[path] = known
	}
	for path := range b.seen {
		if _, ok := ids.exe[path]; !ok {
			delete(b.seen, path)
		}
	}
	return nil
}

func (b *Backend) waitGrace() {
	if b.grace != nil {
		<-b.grace
	}
}

// waitForReaders returns after an RCU grace period: every datapath program
// that read the old generation word has finished (cgroup programs run
// inside rcu_read_lock, and membarrier(GLOBAL) is synchronize_rcu()).
func waitForReaders() {
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		// No membarrier (nohz_full, old kernel): programs run for
		// microseconds, so a generous sleep is an honest substitute.
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *Backend) writeGen(c *compiled, gen uint32) error {
	if err := batchUpdate(b.objs.ExeRules, c.exe); err != nil {
		return fmt.Errorf("write exe rules: %w", err)
	}
	if err := batchUpdate(b.objs.CgroupRules, c.cgroups); err != nil {
		return fmt.Errorf("write cgroup rules: %w", err)
	}
	if err := batchUpdate(b.objs.UidRules, c.uids); err != nil {
		return fmt.Errorf("write user rules: %w", err)
	}
	if err := batchUpdate(b.objs.GidRules, c.gids); err != nil {
		return fmt.Errorf("write group rules: %w", err)
	}
	if err := batchUpdate(b.objs.Dests, c.dests); err != nil {
		return fmt.Errorf("write destinations: %w", err)
	}
	if err := batchUpdate(b.objs.PathRules, c.paths); err != nil {
		return fmt.Errorf("write executable paths: %w", err)
	}
	// A slot handed to a new rule starts from zero and gets its name before
	// the switch; slots of rules that stay are left alone.
	var fresh []uint32
	names := map[uint32]datapathRuleName{}
	for slot, name := range c.names {
		if b.freshSlots[slot] {
			fresh = append(fresh, slot)
			var rn datapathRuleName
			copy(rn.Name[:], toInt8(name))
			names[slot] = rn
		}
	}
	if len(fresh) > 0 {
		if _, err := b.objs.Counters.BatchUpdate(fresh, make([]datapathCounter, len(fresh)*b.ncpu), nil); err != nil {
			return fmt.Errorf("reset counters: %w", err)
		}
		if err := batchUpdate(b.objs.CounterNames, names); err != nil {
			return fmt.Errorf("name counters: %w", err)
		}
	}
	c.config.DefaultCounter = 0
	if err := b.objs.Configs.Update(gen, c.config, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func toInt8(s string) []int8 {
	out := make([]int8, len(s))
	for i := range len(s) {
		out[i] = int8(s[i])
	}
	return out
}

func fromInt8(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func batchUpdate[K comparable, V any](m *ebpf.Map, entries map[K]V) error {
	if len(entries) == 0 {
		return nil
	}
	keys := make([]K, 0, len(entries))
	vals := make([]V, 0, len(entries))
	for k, v := range entries {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	for done, tries := 0, 0; done < len(keys); {
		n, err := m.BatchUpdate(keys[done:], vals[done:], nil)
		done += n
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			for i := done; i < len(keys); i++ {
				if err := retryNoMem(func() error { return m.Update(keys[i], vals[i], ebpf.UpdateAny) }); err != nil {
					return err
				}
			}
			return nil
		case errors.Is(err, unix.ENOMEM) && tries < maxNoMemRetries:
			tries++
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return nil
}

const maxNoMemRetries = 200

// retryNoMem retries a map update that failed with ENOMEM. Maps without
// preallocation take elements from the kernel's BPF allocator, whose per-CPU
// caches refill asynchronously: a burst of thousands of inserts can outrun
// the refill and fail although memory is plentiful. A short pause lets it
// catch up; a real shortage still fails after the retries.
func retryNoMem(f func() error) error {
	for tries := 0; ; tries++ {
		err := f()
		if err == nil || !errors.Is(err, unix.ENOMEM) || tries == maxNoMemRetries {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func batchDelete[K comparable](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(keys, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// clearGen removes every entry of one generation. What we wrote is known;
// after a restart it is found by scanning the maps once.
func (b *Backend) clearGen(gen uint32) error {
	c := b.gens[gen]
	if c == nil {
		var err error
		if c, err = b.scanGen(gen); err != nil {
			return err
		}
	}
	if err := batchDelete(b.objs.ExeRules, keysOf(c.exe)); err != nil {
		return err
	}
	if err := batchDelete(b.objs.CgroupRules, keysOf(c.cgroups)); err != nil {
		return err
	}
	if err := batchDelete(b.objs.UidRules, keysOf(c.uids)); err != nil {
		return err
	}
	if err := batchDelete(b.objs.GidRules, keysOf(c.gids)); err != nil {
		return err
	}
	if err := batchDelete(b.objs.Dests, keysOf(c.dests)); err != nil {
		return err
	}
	if err := batchDelete(b.objs.PathRules, keysOf(c.paths)); err != nil {
		return err
	}
	b.gens[gen] = emptyCompiled()
	return nil
}

func keysOf[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func emptyCompiled() *compiled {
	return &compiled{exe: map[datapathExeKey]datapathRule{}, cgroups: map[datapathIdKey]datapathRule{},
		uids: map[datapathIdKey]datapathRule{}, gids: map[datapathIdKey]datapathRule{},
		dests: map[datapathDestKey]datapathDestVal{}, paths: map[datapathPathKey]datapathRule{}}
}

func (b *Backend) scanGen(gen uint32) (*compiled, error) {
	c := emptyCompiled()
	var pk datapathPathKey
	var pr datapathRule
	pit := b.objs.PathRules.Iterate()
	for pit.Next(&pk, &pr) {
		if pk.Gen == gen {
			c.paths[pk] = pr
		}
	}
	if err := pit.Err(); err != nil {
		return nil, err
	}
	var ek datapathExeKey
	var r datapathRule
	it := b.objs.ExeRules.Iterate()
	for it.Next(&ek, &r) {
		if ek.Gen == gen {
			c.exe[ek] = r
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	for _, pair := range []struct {
		m   *ebpf.Map
		out map[datapathIdKey]datapathRule
	}{{b.objs.CgroupRules, c.cgroups}, {b.objs.UidRules, c.uids}, {b.objs.GidRules, c.gids}} {
		var k datapathIdKey
		it := pair.m.Iterate()
		for it.Next(&k, &r) {
			if k.Gen == gen {
				pair.out[k] = r
			}
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	var dk datapathDestKey
	var dv datapathDestVal
	dit := b.objs.Dests.Iterate()
	for dit.Next(&dk, &dv) {
		if dk.Rule>>31 == gen {
			c.dests[dk] = dv
		}
	}
	return c, dit.Err()
}

// dropUnusedSlots forgets counters of rules that are gone. slotName keeps
// the name so late events are still attributed correctly.
func (b *Backend) dropUnusedSlots(c *compiled) {
	for name, slot := range b.slots {
		if _, ok := c.names[slot]; !ok {
			delete(b.slots, name)
			b.objs.CounterNames.Delete(slot)
		}
	}
}

// restoreSlots reads back the slot of every rule name from the pinned maps.
func (b *Backend) restoreSlots() error {
	var slot uint32
	var rn datapathRuleName
	it := b.objs.CounterNames.Iterate()
	for it.Next(&slot, &rn) {
		if slot != 0 {
			name := fromInt8(rn.Name[:])
			b.slots[name] = slot
			b.slotName[slot] = name
			b.nextSlot = max(b.nextSlot, slot+1)
		}
	}
	return it.Err()
}

// pinnedMaps are the maps kept under the pin dir, by pin name.
func (b *Backend) pinnedMaps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	spec, err := loadDatapath()
	if err != nil {
		return out
	}
	for name := range spec.Maps {
		if m := b.mapByName(name); m != nil {
			out[name] = m
		}
	}
	return out
}

func (b *Backend) pinMaps() error {
	for name, m := range b.pinnedMaps() {
		path := filepath.Join(b.cfg.PinDir, name)
		os.Remove(path)
		if err := m.Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// State implements engine.Backend.
func (b *Backend) State(ctx context.Context) (engine.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := engine.State{Backend: b.Name(), AttachPoint: b.cgroupPath, RuleCounter: map[string]engine.Counters{}}
	st.Hooks = b.activeHooks()
	if b.policy != nil {
		st.Rules = len(b.policy.Rules)
	}
	sums, err := b.readCounters()
	if err != nil {
		return st, err
	}
	for slot, c := range sums {
		name, ok := b.slotName[slot]
		if slot != 0 && (!ok || b.slots[name] != slot) {
			continue
		}
		st.RuleCounter[name] = c
		st.Counters = st.Counters.Add(c)
	}
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
		for _, l := range b.links {
			l.Close()
		}
		if b.execLink != nil {
			b.execLink.Close()
		}
		for _, it := range b.sockIter {
			it.Close()
		}
		b.exec.Close()
		b.socks.Close()
		b.objs.Close()
		if b.resolver != nil {
			b.resolver.Close()
		}
		close(b.violations)
		b.lock.Close()
	})
	return err
}

// Reset implements engine.Resetter: detach and unpin everything.
func (b *Backend) Reset(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reset()
}

func (b *Backend) reset() error {
	if b.execLink != nil {
		b.execLink.Unpin()
		b.execLink.Close()
		b.execLink = nil
	}
	for name, l := range b.links {
		l.Unpin()
		l.Close()
		delete(b.links, name)
	}
	return resetPins(b.cfg.PinDir)
}

// Reset removes everything exewall pinned under pinDir: links (which detaches
// the programs), programs and maps, and the pin dir's lock. It needs no
// running daemon, and refuses while one runs.
func Reset(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	lock, err := lockPinDir(pinDir)
	if err != nil {
		return err
	}
	defer lock.Close() // removes the lock file a killed daemon left
	return resetPins(pinDir)
}

func resetPins(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(pinDir, e.Name())
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			l.Unpin()
			l.Close()
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readCounters sums the per-CPU counters of every slot in use, in batches.
func (b *Backend) readCounters() (map[uint32]engine.Counters, error) {
	used := map[uint32]bool{0: true}
	for _, s := range b.slots {
		used[s] = true
	}
	out := make(map[uint32]engine.Counters, len(used))
	if len(used) <= 256 {
		// Few rules: look up just their slots instead of the whole array.
		vals := make([]datapathCounter, b.ncpu)
		for slot := range used {
			if err := b.objs.Counters.Lookup(slot, &vals); err != nil {
				return nil, fmt.Errorf("read counter: %w", err)
			}
			var c engine.Counters
			for _, v := range vals {
				c = c.Add(engine.Counters{Allowed: v.Allowed, Denied: v.Denied, Audited: v.Audited})
			}
			out[slot] = c
		}
		return out, nil
	}
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]datapathCounter, chunk*b.ncpu)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := b.objs.Counters.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			if !used[keys[i]] {
				continue
			}
			var c engine.Counters
			for _, v := range vals[i*b.ncpu : (i+1)*b.ncpu] {
				c = c.Add(engine.Counters{Allowed: v.Allowed, Denied: v.Denied, Audited: v.Audited})
			}
			out[keys[i]] = c
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		if n < chunk {
			return out, nil
		}
	}
}
