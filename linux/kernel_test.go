//go:build linux

package linux

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/engine"
)

// allPaths is every socket path a denied program could take to addr:port:
// TCP connect and UDP connect and sendto, over IPv4, IPv6 and IPv4-mapped.
func allPaths(v4, v6 netip.Addr, port uint16) []attempt {
	mapped := netip.AddrFrom16(v4.As16()).String() // ::ffff:a.b.c.d
	var out []attempt
	for _, op := range []struct{ proto, op string }{{"tcp", "connect"}, {"udp", "connect"}, {"udp", "sendto"}} {
		out = append(out,
			attempt{Proto: op.proto, Op: op.op, Sock: 4, Addr: v4.String(), Port: port},
			attempt{Proto: op.proto, Op: op.op, Sock: 6, Addr: v6.String(), Port: port},
			attempt{Proto: op.proto, Op: op.op, Sock: 6, Addr: mapped, Port: port})
	}
	return out
}

func TestDeniedExecutableGetsEPERMOnEveryPath(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	rn := newRemoteNet(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	denied := clientCopy(t, dir, "denied-client")
	allowed := clientCopy(t, dir, "allowed-client")
	lport := listenLoopback(t)
	b.apply(t, &engine.Policy{Rules: []engine.Rule{{Name: "curl", Selector: engine.Selector{Exe: denied}, Action: engine.ActionDeny}}})

	attempts := append(allPaths(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), lport),
		allPaths(rn.far4, rn.far6, rn.port)...)
	pid, out := runClient(t, denied, cg, attempts)
	for i, o := range out {
		if !o.denied() {
			t.Errorf("denied exe, %+v: got %+v, want EPERM", attempts[i], o)
		}
	}
	_, out = runClient(t, allowed, cg, attempts)
	for i, o := range out {
		if o.Errno != "" || o.Err != "" {
			t.Errorf("allowed exe, %+v: got %+v, want success", attempts[i], o)
		}
	}

	// One event per denied attempt, with the fields a user reads.
	events := drainViolations(b.Backend, 300*time.Millisecond)
	var mine []engine.Violation
	for _, v := range events {
		if v.PID == uint32(pid) {
			mine = append(mine, v)
		}
	}
	if len(mine) != len(attempts) {
		t.Fatalf("got %d events for pid %d, want %d: %+v", len(mine), pid, len(attempts), events)
	}
	for i, v := range mine {
		a := attempts[i]
		want := netip.MustParseAddr(a.Addr).Unmap()
		if v.Daddr != want || v.Dport != a.Port || v.Proto != a.Proto || v.Family != engine.FamilyOf(want) ||
			v.Verdict != engine.VerdictDeny || v.Rule != "curl" || v.Exe != denied || v.UID != 0 ||
			v.Comm != "denied-client" || time.Since(v.Time) > time.Minute || time.Since(v.Time) < 0 {
			t.Errorf("event %d for %+v: %+v", i, a, v)
		}
	}

	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.RuleCounter["curl"]; got.Denied != uint64(len(attempts)) || got.Allowed != 0 {
		t.Errorf("rule counters %+v, want %d denied", got, len(attempts))
	}
	if got := st.RuleCounter[""]; got.Allowed < uint64(len(attempts)) {
		t.Errorf("default counters %+v, want at least %d allowed", got, len(attempts))
	}
	for _, h := range []string{"connect4", "connect6", "sendmsg4", "sendmsg6", "sock_create", "exec", "sock_destroy"} {
		if !slices.Contains(st.Hooks, h) {
			t.Errorf("hook %s not active: %v", h, st.Hooks)
		}
	}
}

// TestKernelAgreesWithEvaluator runs a table of identities, destinations
// and protocols through the real datapath and checks every outcome against
// the reference evaluator.
func TestKernelAgreesWithEvaluator(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	child := filepath.Join(cg, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	rn := newRemoteNet(t)
	b := newTestBackend(t, cg)
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // the uid-65534 client must be able to run its copy
	os.Chmod(filepath.Dir(dir), 0o755)
	exes := map[string]string{}
	for _, n := range []string{"blocked", "lan", "listed", "mixed", "audited", "plain"} {
		exes[n] = clientCopy(t, dir, n)
	}
	lport := listenLoopback(t)
	root, _ := cgroupMount()
	cgRel := strings.TrimPrefix(child, root)

	dest := func(s string) engine.Dest {
		d, err := parseDestForTest(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	p := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "blocked", Selector: engine.Selector{Exe: exes["blocked"]}, Action: engine.ActionDeny},
		{Name: "lan", Selector: engine.Selector{Exe: exes["lan"]}, Action: engine.ActionLocalOnly},
		{Name: "listed", Selector: engine.Selector{Exe: exes["listed"]}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest(fmt.Sprintf("203.0.113.10/32 port %d tcp", rn.port)), dest(fmt.Sprintf("2001:db8:e1::/48 port %d", rn.port)), dest("127.0.0.0/8 udp")}},
		{Name: "mixed", Selector: engine.Selector{Exe: exes["mixed"]}, Action: engine.ActionAllow,
			Deny:  []engine.Dest{dest("203.0.113.0/24 udp"), dest(fmt.Sprintf("198.51.100.0/30 port %d tcp", rn.port)), dest("::1/128 port 1-1000")},
			Allow: []engine.Dest{dest(fmt.Sprintf("203.0.113.10/32 port %d-%d tcp", rn.port, rn.port))}},
		{Name: "audited", Selector: engine.Selector{Exe: exes["audited"]}, Action: engine.ActionDeny, Audit: true},
		{Name: "pod", Selector: engine.Selector{Cgroup: cgRel}, Action: engine.ActionDeny,
			Allow: []engine.Dest{dest("198.51.100.0/24")}},
		{Name: "nobody", Selector: engine.Selector{User: "65534"}, Action: engine.ActionLocalOnly},
	}}
	b.apply(t, p)
	waitHostNets(t, b.Backend, rn.subnet4, rn.subnet6)
	ev, err := engine.NewEvaluator(p, b.Backend, b.HostNets())
	if err != nil {
		t.Fatal(err)
	}

	type target struct {
		addr netip.Addr
		port uint16
		sock int
	}
	targets := []target{
		{netip.MustParseAddr("127.0.0.1"), lport, 4}, {netip.MustParseAddr("::1"), lport, 6},
		{rn.onLink4, rn.port, 4}, {rn.onLink6, rn.port, 6},
		{rn.far4, rn.port, 4}, {rn.far6, rn.port, 6},
		{netip.AddrFrom16(rn.far4.As16()), rn.port, 6}, {rn.far4, 9, 4},
	}
	var attempts []attempt
	for _, tg := range targets {
		attempts = append(attempts,
			attempt{Proto: "tcp", Op: "connect", Sock: tg.sock, Addr: tg.addr.String(), Port: tg.port},
			attempt{Proto: "udp", Op: "sendto", Sock: tg.sock, Addr: tg.addr.String(), Port: tg.port})
	}
	attempts = append(attempts, attempt{Proto: "udp", Op: "connect", Sock: 4, Addr: rn.far4.String(), Port: rn.port})

	type identity struct {
		name   string
		exe    string
		cgroup string
		opts   []clientOpts
	}
	identities := []identity{
		{"blocked", exes["blocked"], cg, nil}, {"lan", exes["lan"], cg, nil}, {"listed", exes["listed"], cg, nil},
		{"mixed", exes["mixed"], cg, nil}, {"audited", exes["audited"], cg, nil}, {"default", exes["plain"], cg, nil},
		{"cgroup rule", exes["plain"], child, nil}, {"user rule", exes["plain"], cg, []clientOpts{{Cred: &syscall.Credential{Uid: 65534, Gid: 65534}}}},
		{"exe rule beats cgroup rule", exes["mixed"], child, nil},
	}
	cases, denials := 0, 0
	for _, id := range identities {
		fid, _, err := b.Identify(id.exe)
		if err != nil {
			t.Fatal(err)
		}
		subj := engine.Subject{Exe: fid, HasExe: true, Cgroup: strings.TrimPrefix(id.cgroup, root)}
		if len(id.opts) > 0 {
			subj.UID, subj.GID = id.opts[0].Cred.Uid, id.opts[0].Cred.Gid
		}
		_, out := runClient(t, id.exe, id.cgroup, attempts, id.opts...)
		for i, a := range attempts {
			proto := engine.ProtoTCP
			if a.Proto == "udp" {
				proto = engine.ProtoUDP
			}
			want := ev.Evaluate(subj, netip.MustParseAddr(a.Addr), a.Port, proto)
			got := out[i].denied()
			if got != (want.Verdict == engine.VerdictDeny) {
				t.Errorf("%s: %s %s [%s]:%d: kernel denied=%v, evaluator says %s (rule %q) (%+v)", id.name, a.Proto, a.Op, a.Addr, a.Port, got, want.Verdict, want.Rule, out[i])
			}
			if !got && out[i].Err != "" {
				t.Errorf("%s: %+v failed unexpectedly: %+v", id.name, a, out[i])
			}
			cases++
			if got {
				denials++
			}
		}
	}
	if cases < 50 || denials < cases/5 || denials > cases*4/5 {
		t.Fatalf("table too thin: %d cases, %d denied", cases, denials)
	}
	t.Logf("%d (identity, destination, protocol) cases agree, %d of them denied", cases, denials)
}

func parseDestForTest(s string) (engine.Dest, error) {
	// A tiny parser so this test does not depend on the policy file parser.
	var d engine.Dest
	f := strings.Fields(s)
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return d, err
	}
	d.Prefix = p.Masked()
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case "port":
			i++
			lo, hi, ok := strings.Cut(f[i], "-")
			if !ok {
				hi = lo
			}
			var l, h uint16
			fmt.Sscan(lo, &l)
			fmt.Sscan(hi, &h)
			d.PortLo, d.PortHi = l, h
		case "tcp":
			d.Proto = engine.ProtoTCP
		case "udp":
			d.Proto = engine.ProtoUDP
		}
	}
	return d, nil
}

// waitHostNets waits until netlink has told the backend about the subnets.
func waitHostNets(t *testing.T, b *Backend, want ...netip.Prefix) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		nets := b.HostNets()
		ok := true
		for _, w := range want {
			ok = ok && slices.Contains(nets, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host subnets %v never appeared (have %v)", want, nets)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
