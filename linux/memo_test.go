//go:build linux

package linux

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

// TestMemoDoesNotOutliveExec: a thread whose sends were just allowed (the
// datapath memoizes that verdict per CPU and thread) execs a denied program,
// keeping its pid; the denied program's first send and connect to the same
// destination get EPERM, and the events name the denied program's rule.
func TestMemoDoesNotOutliveExec(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	dir := publicDir(t)
	denied, free := clientCopy(t, dir, "memo-denied"), clientCopy(t, dir, "memo-free")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("memo-denied", denied)}})
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=9", "H3_NEXT=" + denied}
	res := runAttacker(t, free, cg, "", "memo-exec", env, false, nil)
	if res["socket"] != "" || res["send-before"] != "" {
		t.Fatalf("control: the allowed program's sends failed: %v", res)
	}
	if res["send"] != "EPERM" || res["connect"] != "EPERM" {
		t.Fatalf("the denied program exec'd by an allowed thread got %v, want EPERM for send and connect", res)
	}
	v := waitViolation(t, b.Backend, func(v engine.Violation) bool { return v.Rule == "memo-denied" })
	t.Logf("after exec: %v; event: rule %s exe %s", res, v.Rule, v.Exe)
}

// TestMemoDoesNotOutliveLocalNet: a local-only program's connect to a host
// on one of the machine's subnets is allowed; once the machine leaves that
// subnet, the same thread's next connect there, from the same CPU (where the
// datapath memoizes allowed verdicts), gets EPERM. local_nets follows the
// addresses without a new policy word, so a memoized allow would outlive it.
func TestMemoDoesNotOutliveLocalNet(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	rn := newRemoteNet(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, t.TempDir(), "lan-only")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{
		{Name: "lan", Selector: engine.Selector{Exe: exe}, Action: engine.ActionLocalOnly}}})
	waitHostNets(t, b.Backend, rn.subnet4)

	to := attempt{Proto: "tcp", Op: "connect", Sock: 4, Addr: rn.onLink4.String(), Port: rn.port}
	c := startClient(t, exe, cg, []attempt{{Op: "ready"}, {Op: "wait"}, to, {Op: "ready"}, {Op: "wait"}, to})
	c.waitReady(t)
	pinToCPU0(t, c.Pid())
	c.Continue()
	c.waitReady(t)

	leaveSubnet(t, hostAddr4, rn.onLink4)
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(b.HostNets(), rn.subnet4) {
		if time.Now().After(deadline) {
			t.Fatalf("host subnet %v still local after its address went", rn.subnet4)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := c.proceed(t)
	if out[2].Errno != "" && out[2].Err != "" {
		t.Fatalf("control: connect to %s on a host subnet got %+v, want it through", rn.onLink4, out[2])
	}
	if !out[5].denied() {
		t.Fatalf("connect to %s after the host left its subnet got %+v, want EPERM", rn.onLink4, out[5])
	}
}

// pinToCPU0 keeps every thread of pid (and so the threads they start) on CPU 0.
func pinToCPU0(t *testing.T, pid int) {
	t.Helper()
	var set unix.CPUSet
	set.Set(0)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			t.Fatalf("pin thread %d: %v", tid, err)
		}
	}
}

// leaveSubnet takes the host off host's subnet while peer stays routed into
// the same link: a second address (a /32, so a subnet of its own) keeps the
// link's routes, and a route to peer alone keeps traffic to it on the test
// veth. It refuses to go on if peer would route anywhere else.
func leaveSubnet(t *testing.T, host netip.Prefix, peer netip.Addr) {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(host.Addr().AsSlice()) })
	if i < 0 {
		t.Fatalf("no link has %s", host)
	}
	link, err := netlink.LinkByIndex(addrs[i].LinkIndex)
	if err != nil {
		t.Fatal(err)
	}
	keep := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 201), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(link, keep); err != nil {
		t.Fatalf("add %s: %v", keep, err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: peer.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.RouteAdd(route); err != nil {
		t.Fatalf("add route to %s: %v", peer, err)
	}
	if err := netlink.AddrDel(link, &addrs[i]); err != nil {
		t.Fatalf("remove %s: %v", host, err)
	}
	routes, err := netlink.RouteGet(peer.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].LinkIndex != link.Attrs().Index {
		t.Fatalf("%s no longer routes to the test veth (%v, %v)", peer, routes, err)
	}
}
