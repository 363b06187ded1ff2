//go:build linux

package linux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/exewall/exewall/engine"
)

// sweepHeldSockets re-judges every TCP socket that can still carry data and
// every connected UDP socket of this network namespace by the policy now in
// force and destroys those it denies, so a tightened rule also cuts
// connections the program already holds (accepted ones included: they carry
// their listener's creator). Any number of sockets: the denied cookies go to
// sock_doomed in batches the map can hold. Sockets created before exewall was
// loaded carry no owner and are left alone. The outcome is kept for status,
// sync and /metrics: a sweep that cannot finish is never silent.
func (b *Backend) sweepHeldSockets(g *generation, p *engine.Policy, gen uint32) (int, error) {
	n, err := b.sweep(g, p, gen)
	if errors.Is(err, errNoIters) {
		return n, err
	}
	b.sweepErr = err
	return n, err
}

// sweepBatch is how many cookies go to sock_doomed at once (0: its size);
// tests make it unbounded to show what batching prevents.
var sweepBatch = 0

func (b *Backend) sweep(g *generation, p *engine.Policy, gen uint32) (int, error) {
	if b.sockIter == nil {
		return 0, errNoIters
	}
	// A sweep that died half way (an older daemon, a crash) may have left
	// cookies behind; they would fill the map and end unrelated sockets.
	if err := clearMap[uint64, uint8](b.objs.SockDoomed); err != nil {
		return 0, fmt.Errorf("clear doomed sockets: %w", err)
	}
	var recs []heldRec
	for _, it := range b.sockIter[:2] {
		got, err := readSockRecs(it.Open)
		if err != nil {
			return 0, err
		}
		recs = append(recs, got...)
	}
	inheritFromListeners(recs)
	cgroupPaths := map[uint64]string{}
	// The generation's entries, built when a socket is first judged.
	var c *compiled
	flat := func() *compiled {
		if c == nil {
			c = g.flat(p, b.slotOf, gen)
		}
		return c
	}
	var bySlot map[uint32]*engine.Rule // rule ids are slots (ruleID); built when first needed
	ruleOf := func(slot uint32) *engine.Rule {
		if bySlot == nil {
			bySlot = make(map[uint32]*engine.Rule, len(p.Rules))
			for i := range p.Rules {
				if s, ok := b.slots.get(p.Rules[i].Name); ok {
					bySlot[s] = &p.Rules[i]
				}
			}
		}
		return bySlot[slot]
	}
	var doomed []uint64
	for _, r := range recs {
		if r.HasOwner == 0 || r.listening {
			continue
		}
		if r.accepted && judgeAcceptedInbound {
			if b.judgeAccepted(flat(), p, gen, &r, cgroupPaths, ruleOf) == engine.VerdictDeny {
				doomed = append(doomed, r.Cookie)
			}
			continue
		}
		if b.judgeHeld(flat(), p, gen, &r.datapathSockRec, cgroupPaths, ruleOf) == engine.VerdictDeny {
			doomed = append(doomed, r.Cookie)
		}
	}
	total := len(doomed)
	batch := int(b.objs.SockDoomed.MaxEntries())
	if sweepBatch != 0 {
		batch = sweepBatch
	}
	for len(doomed) > 0 {
		k := min(batch, len(doomed))
		if err := b.destroyCookies(doomed[:k]); err != nil {
			return 0, err
		}
		doomed = doomed[k:]
	}
	return total, nil
}

// destroyCookies ends the sockets whose cookies are given (at most what
// sock_doomed holds) and leaves sock_doomed empty.
func (b *Backend) destroyCookies(cookies []uint64) error {
	defer clearMap[uint64, uint8](b.objs.SockDoomed)
	for _, c := range cookies {
		if err := b.objs.SockDoomed.Update(c, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("mark socket: %w", err)
		}
	}
	for _, it := range b.sockIter[2:] {
		if _, err := readSockRecs(it.Open); err != nil {
			return err
		}
	}
	return nil
}

// SweepError is why the last held-socket sweep could not finish, or nil.
func (b *Backend) SweepError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sweepErr
}

// heldRec is one socket the iterator reported (bpf/guard.h held_rec).
type heldRec struct {
	datapathSockRec
	sport     uint16
	listening bool
	accepted  bool // judged inbound (inbound_sweep.go)
}

func readSockRecs(open func() (io.ReadCloser, error)) ([]heldRec, error) {
	rd, err := open()
	if err != nil {
		return nil, fmt.Errorf("run socket iterator: %w", err)
	}
	data, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		return nil, fmt.Errorf("read socket iterator: %w", err)
	}
	size := binary.Size(socketsHeldRec{})
	recSize := binary.Size(datapathSockRec{})
	out := make([]heldRec, 0, len(data)/size)
	for off := 0; off+size <= len(data); off += size {
		var h heldRec
		if err := binary.Read(bytes.NewReader(data[off:off+recSize]), binary.NativeEndian, &h.datapathSockRec); err != nil {
			return nil, err
		}
		h.sport = binary.NativeEndian.Uint16(data[off+recSize:])
		h.listening = data[off+recSize+2] == 1
		h.accepted = data[off+recSize+3] == 1
		out = append(out, h)
	}
	return out, nil
}

// inheritFromListeners gives an accepted TCP socket that carries no creator
// (its listener never bound explicitly, so post_bind could not hand it
// down) the creator of the live listener on its local port.
func inheritFromListeners(recs []heldRec) {
	owners := map[uint16]datapathSockOwner{}
	for _, r := range recs {
		if r.listening && r.HasOwner == 1 && r.Proto == uint8(engine.ProtoTCP) {
			owners[r.sport] = r.Owner
		}
	}
	for i := range recs {
		r := &recs[i]
		if o, ok := owners[r.sport]; ok && !r.listening && r.HasOwner == 0 && r.Proto == uint8(engine.ProtoTCP) {
			r.Owner, r.HasOwner = o, 1
		}
	}
}

func clearMap[K comparable, V any](m *ebpf.Map) error {
	var k K
	var v V
	var keys []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return err
	}
	return batchDelete(m, keys)
}

// judgeHeld decides a held socket the way the datapath decides a connect,
// from the compiled maps of generation gen and the socket creator's identity.
func (b *Backend) judgeHeld(c *compiled, p *engine.Policy, gen uint32, r *datapathSockRec, cgroupPaths map[uint64]string, ruleOf func(uint32) *engine.Rule) engine.Verdict {
	o := r.Owner
	var rule *datapathRule
	if o.HasExe == 1 {
		if dr, ok := c.exe[datapathExeKey{Id: o.Exe, Gen: gen}]; ok {
			rule = &dr
		}
	}
	if rule == nil && c.config.HasCgroupRules == 1 {
		rule = b.heldCgroupRule(c, gen, o.Cgroup, cgroupPaths)
	}
	if rule == nil {
		if dr, ok := c.uids[datapathIdKey{Id: uint64(o.Uid), Gen: gen}]; ok {
			rule = &dr
		} else if dr, ok := c.gids[datapathIdKey{Id: uint64(o.Gid), Gen: gen}]; ok {
			rule = &dr
		}
	}
	var dst netip.Addr
	if r.Family == 4 {
		dst = netip.AddrFrom4([4]byte(r.Daddr[:4]))
	} else {
		dst = netip.AddrFrom16(r.Daddr).Unmap()
	}
	proto := engine.Proto(r.Proto)
	action, audit := engine.Action(c.config.DefaultAction), false
	if rule != nil {
		pr := ruleOf(rule.Id &^ genBit)
		if pr == nil {
			return engine.VerdictAllow
		}
		action, audit = pr.Action, pr.Audit
		if v, ok := b.matchHeld(pr, dst, r.Dport, proto); ok { // names: with the bindings
			if v == engine.VerdictAllow {
				return v
			}
			return denyOrAudit(audit || p.Mode == engine.ModeAudit)
		}
	}
	switch {
	case action == engine.ActionAllow:
		return engine.VerdictAllow
	case action == engine.ActionLocalOnly && engine.IsLocal(dst, b.hostNets):
		return engine.VerdictAllow
	}
	return denyOrAudit(audit || p.Mode == engine.ModeAudit)
}

func denyOrAudit(audit bool) engine.Verdict {
	if audit {
		return engine.VerdictAudit
	}
	return engine.VerdictDeny
}

// heldCgroupRule finds the deepest cgroup rule containing cgroup id.
func (b *Backend) heldCgroupRule(c *compiled, gen uint32, id uint64, cache map[uint64]string) *datapathRule {
	path, ok := cache[id]
	if !ok {
		path = b.cgroupPathOf(id)
		cache[id] = path
	}
	for path != "" {
		if cid, err := cgroupID(filepath.Join(b.cgroupRoot, path)); err == nil {
			if dr, ok := c.cgroups[datapathIdKey{Id: cid, Gen: gen}]; ok {
				return &dr
			}
		}
		if path == "/" {
			break
		}
		path = filepath.Dir(path)
	}
	return nil
}

// cgroupPathOf finds a cgroup's path by id by walking the hierarchy.
func (b *Backend) cgroupPathOf(id uint64) string {
	found := ""
	filepath.WalkDir(b.cgroupRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || found != "" {
			return filepath.SkipDir
		}
		if cid, err := cgroupID(p); err == nil && cid == id {
			found = "/" + strings.TrimPrefix(strings.TrimPrefix(p, b.cgroupRoot), "/")
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// syncSweep reports a held-socket sweep that could not finish, retrying it
// first unless the apply sync just made ran one.
func (b *Backend) syncSweep(report func(bool, string, ...any), applied bool, gen uint32) {
	if b.sweepErr == nil {
		return
	}
	prev := b.sweepErr
	if !applied && b.gens[gen] != nil && b.policy != nil {
		b.sweepHeldSockets(b.gens[gen], b.policy, gen)
	}
	if b.sweepErr != nil {
		report(false, "held sockets could not all be re-judged (connections the policy denies may still be open): %v", b.sweepErr)
	} else {
		report(true, "held sockets could not all be re-judged after the last apply: %v", prev)
	}
}
