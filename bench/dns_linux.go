//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/engine/dnsproxy"
	"github.com/exewall/exewall/linux"
)

// The DNS names section (issue 15): side by side in one run, a lookup
// through exewall's forwarder vs the same lookup to a server exewall does
// not steer; the kernel run time of a connect judged by a name entry vs a
// CIDR entry; and the memory one binding costs at 100,000 bindings.

const dnsChildEnv = "EXEWALL_BENCH_DNS_CHILD"

func init() {
	if os.Getenv(dnsChildEnv) != "" {
		os.Exit(dnsChildMain())
	}
}

// dnsJob is what a DNS child does: Lookups A queries of Names (cycled) to
// Server, a fresh connected UDP socket each as glibc does, timing each; or
// Connects UDP connects to Target (judged, no packet sent).
type dnsJob struct {
	Server   string
	Names    []string
	Lookups  int
	Target   string
	Connects int
}

func dnsChildMain() int {
	var j dnsJob
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	runtime.LockOSThread()
	var lat []int64
	buf := make([]byte, 1500)
	for i := range j.Lookups {
		q := dnsQuery(j.Names[i%len(j.Names)])
		t0 := time.Now()
		c, err := net.Dial("udp4", j.Server)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err = c.Write(q); err == nil {
				_, err = c.Read(buf)
			}
			c.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "lookup:", err)
			return 1
		}
		lat = append(lat, int64(time.Since(t0)))
	}
	if j.Connects > 0 {
		sa := &unix.SockaddrInet4{Port: 443, Addr: netip.MustParseAddr(j.Target).As4()}
		for range j.Connects {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return 1
			}
			if err := unix.Connect(fd, sa); err != nil {
				fmt.Fprintln(os.Stderr, "connect:", err)
				unix.Close(fd)
				return 1
			}
			unix.Close(fd)
		}
	}
	json.NewEncoder(os.Stdout).Encode(lat)
	return 0
}

func dnsQuery(name string) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(rand.IntN(65536)), RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	return q
}

// dnsServe answers every A query on pc with an address derived from the
// name (q<N>.… -> 10.N/24-ish), TTL 300.
func dnsServe(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		label, _, _ := strings.Cut(q.Name.String(), ".")
		k, _ := strconv.Atoi(strings.TrimPrefix(label, "q"))
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 300},
			dnsmessage.AResource{A: [4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}})
		out, _ := b.Finish()
		pc.WriteTo(out, from)
	}
}

func (b *bench) dnsSection() error {
	mark := b.cl.mark()
	defer b.cl.release(mark)
	be, err := b.newBackend(b.clientCg, "dns")
	if err != nil {
		return err
	}
	// Two servers on loopback: the trusted one (steered) and another the
	// policy allows as a plain destination (direct).
	var pcs []net.PacketConn
	var addrs []netip.AddrPort
	for len(pcs) < 2 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 53, byte(1 + rand.IntN(250)), byte(1 + rand.IntN(250))}), 53)
		pc, err := net.ListenPacket("udp4", ap.String())
		if err != nil {
			continue
		}
		b.cl.create("dns server "+ap.String(), pc.Close, func() error { return nil })
		go dnsServe(pc)
		pcs, addrs = append(pcs, pc), append(addrs, ap)
	}
	trusted, direct := addrs[0], addrs[1]
	// The floor: the cheapest userspace hop (dns_floor_linux.go) in front
	// of the direct server, allowed to the client as a plain destination.
	var floor *dnsFloor
	for floor == nil {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 54, byte(1 + rand.IntN(250)), byte(1 + rand.IntN(250))}), 53)
		if floor, err = newDNSFloor(ap, direct); err != nil {
			continue
		}
		b.cl.create("dns floor forwarder "+ap.String(), floor.close, func() error { return nil })
	}
	names, err := engine.ParseName("*.n.dns.test")
	if err != nil {
		return err
	}
	rule := engine.Rule{Name: "dns-bench", Selector: engine.Selector{Exe: b.client}, Action: engine.ActionDeny, Allow: []engine.Dest{
		{Name: names},
		{Prefix: netip.MustParsePrefix("198.19.0.0/16")},
		{Prefix: netip.PrefixFrom(direct.Addr(), 32), PortLo: 53, PortHi: 53},
		{Prefix: netip.PrefixFrom(floor.addr.Addr(), 32), PortLo: 53, PortHi: 53},
	}}
	p := &engine.Policy{Resolvers: []netip.AddrPort{trusted}, Rules: []engine.Rule{rule}}
	if err := be.Apply(context.Background(), p); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	px, err := dnsproxy.New(dnsproxy.Config{Listen4: netip.MustParseAddrPort("127.0.0.1:0"), Origin: be, Learner: be, PerRuleCap: 200_000})
	if err != nil {
		return err
	}
	go px.Serve(ctx)
	u4, _, t4, _ := px.Addrs()
	if err := be.SetForwarder(u4, t4, netip.AddrPort{}, netip.AddrPort{}, os.Getpid()); err != nil {
		return err
	}
	// Lookups are cheap (a few seconds in all): many, over many interleaved
	// rounds, so that the load of a shared machine falls on all three alike.
	res := &DNSResult{Lookups: 6000, Connects: 20000, Bindings: 100_000}
	rounds := 12
	if b.o.quick {
		res.Lookups, res.Connects, res.Bindings, rounds = 600, 3000, 10_000, 4
	}

	// Latency, interleaved: direct, floor, exewall, direct, floor...
	lats := map[netip.AddrPort][]int64{}
	for round := range rounds {
		for _, srv := range []netip.AddrPort{direct, floor.addr, trusted} {
			lat, err := b.dnsChild(dnsJob{Server: srv.String(), Names: []string{"hot.n.dns.test"}, Lookups: res.Lookups / rounds})
			if err != nil {
				return fmt.Errorf("lookups round %d via %s: %w", round, srv, err)
			}
			lats[srv] = append(lats[srv], lat...)
		}
	}
	res.DirectP50Us, res.DirectP99Us = pct(lats[direct], 50), pct(lats[direct], 99)
	res.FloorP50Us, res.FloorP99Us = pct(lats[floor.addr], 50), pct(lats[floor.addr], 99)
	res.ExewallP50Us, res.ExewallP99Us = pct(lats[trusted], 50), pct(lats[trusted], 99)

	// Kernel run time of connect4: name-bound vs CIDR, then a rule without
	// names for the CIDR baseline.
	id, ok := be.RuleID("dns-bench")
	if !ok {
		return errors.New("no rule id")
	}
	bound := netip.MustParseAddr("198.18.0.1")
	if err := be.Learn([]linux.NameBinding{{Rule: id, Names: []string{"hot.n.dns.test"}, Addr: bound, Expires: time.Now().Add(time.Hour)}}); err != nil {
		return err
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	var nameNs, cidrNs []float64
	for range 3 {
		for _, target := range []string{bound.String(), "198.19.0.1"} {
			ns, err := b.connectCost(target, res.Connects/3)
			if err != nil {
				return err
			}
			if target == "198.19.0.1" {
				cidrNs = append(cidrNs, ns)
			} else {
				nameNs = append(nameNs, ns)
			}
		}
	}
	res.NameNs, res.CIDRNs = median(nameNs), median(cidrNs)
	plain := rule
	plain.Allow = plain.Allow[1:]
	if err := be.Apply(context.Background(), &engine.Policy{Rules: []engine.Rule{plain}}); err != nil {
		return err
	}
	var plainNs []float64
	for range 3 {
		ns, err := b.connectCost("198.19.0.1", res.Connects/3)
		if err != nil {
			return err
		}
		plainNs = append(plainNs, ns)
	}
	res.CIDROnlyNs = median(plainNs)

	// Memory: res.Bindings distinct names answered with distinct
	// addresses, through the forwarder, by one program.
	if err := be.Apply(context.Background(), p); err != nil {
		return err
	}
	// A binding is an element of name_binds pointing at a name node in
	// dests that the rule's bindings share: both maps count.
	dests, err := ebpf.LoadPinnedMap(filepath.Join(b.pinBase, "dns", "dests"), nil)
	if err != nil {
		return err
	}
	defer dests.Close()
	binds, err := ebpf.LoadPinnedMap(filepath.Join(b.pinBase, "dns", "name_binds"), nil)
	if err != nil {
		return err
	}
	defer binds.Close()
	// The names to ask are made before the heap is read: they are the
	// benchmark's, not the daemon's.
	var many []string
	for i := range res.Bindings {
		many = append(many, fmt.Sprintf("q%d.n.dns.test", i+1))
	}
	k0, err := memlock(dests)
	if err != nil {
		return err
	}
	b0, err := memlock(binds)
	if err != nil {
		return err
	}
	h0 := heapNow()
	if _, err := b.dnsChild(dnsJob{Server: trusted.String(), Names: many, Lookups: len(many)}); err != nil {
		return err
	}
	k1, err := memlock(dests)
	if err != nil {
		return err
	}
	b1, err := memlock(binds)
	if err != nil {
		return err
	}
	h1 := heapNow()
	if path := os.Getenv("EXEWALL_BENCH_HEAPPROFILE"); path != "" {
		// Where the daemon heap goes: go tool pprof -sample_index=inuse_space.
		if f, err := os.Create(path); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if n := len(be.Bindings()); n < res.Bindings {
		return fmt.Errorf("%d bindings in force, want %d", n, res.Bindings)
	}
	// The name_binds element is served from its allocator size class;
	// the shared nodes' growth in dests is added as counted.
	perBind, perNode := float64(b1-b0)/float64(res.Bindings), float64(k1-k0)/float64(res.Bindings)
	res.KernelBytesPerBinding = perBind + perNode
	res.KernelSlabPerBinding = slabClass(perBind) + perNode
	res.UserBytesPerBinding = float64(h1-h0) / float64(res.Bindings)
	runtime.KeepAlive(many)
	b.rep.DNS = res
	fmt.Fprintf(os.Stderr, "bench: dns %+v\n", *res)
	return nil
}

func (b *bench) dnsChild(j dnsJob) ([]int64, error) {
	cgfd, err := os.Open(b.clientCg)
	if err != nil {
		return nil, err
	}
	defer cgfd.Close()
	cmd := exec.Command(b.client)
	cmd.Env = append(os.Environ(), dnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	in, _ := json.Marshal(j)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dns client: %v: %s", err, stderr.String())
	}
	var lat []int64
	return lat, json.Unmarshal(stdout.Bytes(), &lat)
}

// connectCost runs n UDP connects to target from the client cgroup and
// returns the connect4 programs' run time per connect (bpf_stats).
func (b *bench) connectCost(target string, n int) (float64, error) {
	progs, err := cgroupProgs(b.clientCg, ebpf.AttachCGroupInet4Connect)
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, p := range progs {
			p.Close()
		}
	}()
	before, err := runTime(progs)
	if err != nil {
		return 0, err
	}
	if _, err := b.dnsChild(dnsJob{Target: target, Connects: n}); err != nil {
		return 0, err
	}
	after, err := runTime(progs)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

func cgroupProgs(cg string, at ebpf.AttachType) ([]*ebpf.Program, error) {
	f, err := os.Open(cg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	q, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at})
	if err != nil {
		return nil, err
	}
	var out []*ebpf.Program
	for _, ap := range q.Programs {
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func runTime(progs []*ebpf.Program) (time.Duration, error) {
	var sum time.Duration
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			return 0, err
		}
		sum += st.Runtime
	}
	return sum, nil
}

// memlock is the kernel's own count of a map's memory (fdinfo memlock).
func memlock(m *ebpf.Map) (int64, error) {
	if m.Type() == ebpf.ArrayOfMaps {
		// A map sized to the policy (linux/sized.go): the hash in force
		// sits in slot 0 of the pinned array, and its memory is the figure.
		var id uint32
		if err := m.Lookup(uint32(0), &id); err != nil {
			return 0, fmt.Errorf("the hash in force behind %v: %w", m, err)
		}
		inner, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return 0, err
		}
		defer inner.Close()
		m = inner
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in fdinfo")
}

func heapNow() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func pct(ns []int64, p int) float64 {
	if len(ns) == 0 {
		return 0
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)]) / 1e3
}

// slabClass rounds an element's size up to the size class the kernel's
// BPF allocator (bpf_mem_alloc, kmalloc caches) serves it from: memlock
// counts the element, the slab hands out the class.
func slabClass(n float64) float64 {
	for _, c := range []float64{16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096} {
		if n <= c {
			return c
		}
	}
	return n
}
