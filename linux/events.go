//go:build linux

package linux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

var protoNames = [...]string{0: "", 1: "tcp", 2: "udp", 3: "icmp", 4: "raw"}

// enum hook, mirrored from bpf/exewall.h.
const (
	hookConnect4   = 1
	hookConnect6   = 2
	hookSendmsg4   = 3
	hookSendmsg6   = 4
	hookSockCreate = 5
	hookInbound    = 6 // bpf/inbound.c: daddr is the peer, dport the local port
)

// violationBuffer is how many enriched events may wait for the consumer.
const violationBuffer = 16384

// violationChan is the capacity of the channel Violations returns; the
// rest of violationBuffer waits in the queue.
const violationChan = 256

// violationQueue holds enriched events until the consumer takes them, in
// a slice that grows as they come: a channel of violationBuffer events
// would keep 3.5 MB resident from the start, idle or not.
type violationQueue struct {
	mu      sync.Mutex
	pending []engine.Violation
	waiting int           // pending plus those taken out and not yet handed over
	wake    chan struct{} // a token when pending has events
}

// deliver queues v for the consumer, or counts the attempts it stands for
// as lost when violationBuffer events already wait. It never blocks.
func (b *Backend) deliver(v engine.Violation, attempts uint64) {
	q := &b.queue
	q.mu.Lock()
	if q.waiting >= violationBuffer {
		q.mu.Unlock()
		atomic.AddUint64(&b.dropped, attempts)
		return
	}
	q.pending = append(q.pending, v)
	q.waiting++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// forwardViolations hands the queued events to the consumer, in order,
// until the backend closes (flushViolations then passes on what is left).
func (b *Backend) forwardViolations() {
	defer b.wg.Done()
	q := &b.queue
	for {
		select {
		case <-b.done:
			return
		case <-q.wake:
		}
		q.mu.Lock()
		batch := q.pending
		q.pending = nil // a storm's slice goes with its batch
		q.mu.Unlock()
		for i, v := range batch {
			select {
			case b.violations <- v:
				q.mu.Lock()
				q.waiting--
				q.mu.Unlock()
			case <-b.done:
				// Back in front of what came since, for flushViolations.
				q.mu.Lock()
				q.pending = append(batch[i:], q.pending...)
				q.mu.Unlock()
				return
			}
		}
	}
}

// flushViolations runs once nothing delivers any more (Close, after the
// reader and the forwarder stopped): what still waits goes into the
// channel while it has room, for the consumer to read before it closes;
// the rest is counted as lost.
func (b *Backend) flushViolations() {
	q := &b.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, v := range q.pending {
		select {
		case b.violations <- v:
		default:
			atomic.AddUint64(&b.dropped, v.Count)
		}
	}
	q.pending, q.waiting = nil, 0
}

// nameSnapshot maps counter slots to rule names as of the last apply.
type nameSnapshot struct {
	slotName slotView
	// rules are the rules of the policy applied; before those of the
	// one before, for events still in flight (neither is changed once
	// published).
	rules  slotRuleTable
	before map[string]*engine.Rule
}

// rulesGone are the rules whose names the policy applied after theirs no
// longer has (kept says it has), for events still in flight: as copies,
// since a pointer into the old policy's rules would keep all of them (a
// whole policy: 17 MB at 100,000 rules) until the next apply.
func rulesGone(rules []engine.Rule, kept func(name string) bool, gone map[string]*engine.Rule) {
	for i := range rules {
		if !kept(rules[i].Name) {
			gone[rules[i].Name] = ruleCopy(&rules[i])
		}
	}
}

// ruleCopy is a copy of r that shares no list with it.
func ruleCopy(r *engine.Rule) *engine.Rule {
	c := *r
	c.Allow, c.Deny = slices.Clone(r.Allow), slices.Clone(r.Deny)
	return &c
}

// rulesGoneFrom is rulesGone for the rules of old (the rule table of the
// policy before) whose slot does not hold their name in now: a name keeps
// its slot while it stays in the policy.
func rulesGoneFrom(old, now slotRuleTable, gone map[string]*engine.Rule) {
	for slot, r := range old {
		if r != nil && now.named(uint32(slot), r.Name) == nil {
			gone[r.Name] = ruleCopy(r)
		}
	}
}

// rule is the rule at slot named name in the policy applied, else the one
// so named in the policy before.
func (s *nameSnapshot) rule(slot uint32, name string) *engine.Rule {
	if r := s.rules.named(slot, name); r != nil {
		return r
	}
	return s.before[name]
}

func (b *Backend) droppedEvents() uint64 { return atomic.LoadUint64(&b.dropped) }

// readEvents turns ring buffer records into violations. It never blocks on a
// slow consumer: the ring buffer would fill and the kernel would start losing
// events, so an undeliverable event is counted as lost here instead.
func (b *Backend) readEvents() {
	defer b.wg.Done()
	var rec ringbuf.Record
	var ev datapathEvent
	size := binary.Size(ev)
	for {
		if err := b.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			b.log.Warn("read ring buffer", "err", err)
			continue
		}
		if len(rec.RawSample) < size {
			continue
		}
		if err := binary.Read(bytes.NewReader(rec.RawSample[:size]), binary.NativeEndian, &ev); err != nil {
			continue
		}
		v := b.enrich(&ev)
		b.deliver(v, v.Count)
	}
}

func (b *Backend) enrich(ev *datapathEvent) engine.Violation {
	v := engine.Violation{
		Time:    bootToWall(ev.BootNs),
		PID:     ev.Pid,
		UID:     ev.Uid,
		Comm:    fromInt8(ev.Comm[:]),
		Verdict: engine.VerdictDeny,
		Dport:   ev.Dport,
		Count:   uint64(max(ev.Count, 1)),
	}
	switch ev.Hook {
	case hookConnect4, hookConnect6:
		v.Call = engine.CallConnect
	case hookSendmsg4, hookSendmsg6:
		v.Call = engine.CallSend
	case hookSockCreate:
		v.Call = engine.CallSocket
	}
	v.Direction = engine.DirOut.String()
	if ev.Hook == hookInbound {
		v.Direction = engine.DirIn.String()
	}
	if ev.Verdict == verdictAudit {
		v.Verdict = engine.VerdictAudit
	}
	if int(ev.Proto) < len(protoNames) {
		v.Proto = protoNames[ev.Proto]
	}
	if ev.Family == 4 {
		v.Daddr = netip.AddrFrom4([4]byte(ev.Daddr[:4]))
	} else {
		v.Daddr = netip.AddrFrom16(ev.Daddr)
	}
	v.Family = engine.FamilyOf(v.Daddr)

	// A snapshot taken at apply: the reader never waits for an apply or a
	// sync holding the backend's lock, which would let the ring fill.
	if names := b.names.Load(); names != nil && ev.Counter != 0 {
		v.Rule, _ = names.slotName.get(ev.Counter)
		r := names.rule(ev.Counter, v.Rule)
		if r != nil && r.Exe != "" {
			v.Exe = r.Exe
		}
		v.Name = b.violationName(r, ev.Counter, &v)
	}
	if v.Exe == "" {
		// The default verdict or a cgroup/user rule: name the executable
		// from the identity the kernel judged, never from the PID alone.
		v.Exe = b.exeOf(ev)
	}
	return v
}

// bootToWall converts CLOCK_BOOTTIME nanoseconds (what the datapath stamps,
// monotonic across suspend) to wall-clock time.
func bootToWall(bootNs uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Now()
	}
	now := time.Now()
	return now.Add(-time.Duration(uint64(ts.Nano()) - bootNs))
}

// sweepGates reports attempts the kernel held back in windows that have
// ended with no further attempt to carry them (the tail of a burst).
func (b *Backend) sweepGates() {
	now := bootNow()
	var k datapathGateKey
	var g datapathGate
	var flush []datapathGateKey
	it := b.objs.EventGates.Iterate()
	for it.Next(&k, &g) {
		// Two windows idle: no attempt is racing to reopen this one.
		if g.Suppressed > 0 && now-g.Start >= 2*eventWindow {
			flush = append(flush, k)
		}
	}
	for _, k := range flush {
		if err := b.objs.EventGates.LookupAndDelete(&k, &g); err != nil || g.Suppressed == 0 {
			continue
		}
		ev := g.Ev
		ev.Count = uint32(min(g.Suppressed, 1<<32-1))
		ev.BootNs = now
		v := b.enrich(&ev)
		b.deliver(v, g.Suppressed)
	}
}

const eventWindow = uint64(time.Second) // EVENT_WINDOW_NS

func bootNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}
