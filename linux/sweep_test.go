//go:build linux

package linux

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/engine"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestTighteningCutsCloseWait is issue 13 item 3: a connection whose peer
// has closed its side (CLOSE_WAIT) still sends; a tightening must cut it.
// The holder is uid 65534 in the attach cgroup.
func TestTighteningCutsCloseWait(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, publicDir(t), "halfopen")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan int, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*net.TCPConn).CloseWrite() // the holder goes to CLOSE_WAIT
		n := 0
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			k, err := c.Read(buf)
			n += k
			if err != nil {
				break
			}
		}
		got <- n
	}()
	b.apply(t, &engine.Policy{Default: engine.ActionAllow})
	port := l.Addr().(*net.TCPAddr).Port
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=" + strconv.Itoa(port)}
	res := runAttacker(t, exe, cg, "", "close-wait", env, false, func() {
		b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("halfopen", exe)}})
	})
	if res["connect"] != "" {
		t.Fatalf("connect while allowed: %v", res)
	}
	if res["write"] == "" {
		t.Errorf("a CLOSE_WAIT connection kept sending after its rule tightened: %v", res)
	}
	l.Close()
	t.Logf("holder %v; server read %d bytes after the tightening", res, <-got)
}

// TestTighteningCutsAcceptedSockets is issue 13 item 3: a restricted program
// (uid 65534) listens, accepts a connection, closes the listener and sends on
// the accepted socket; that socket never passed sock_create, so it carries
// its listener's creator (post_bind + BPF_F_CLONE storage) and is cut.
func TestTighteningCutsAcceptedSockets(t *testing.T) {
	requireKernel(t)
	t.Run("bound", testAcceptedCut)
	t.Run("unbound", func(t *testing.T) {
		// listen() without bind(): no post_bind, the sweep matches the
		// accepted socket to its live listener by port.
		cg := scratchCgroup(t)
		b := newTestBackend(t, cg)
		exe := clientCopy(t, publicDir(t), "server")
		b.apply(t, &engine.Policy{Default: engine.ActionAllow})
		a := startAttacker(t, exe, cg, "", "accepted", []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=0", "H3_UNBOUND=1"}, false)
		if !a.ready(t) {
			t.Fatalf("server: %v", a.finish(t))
		}
		c, err := net.Dial("tcp4", "127.0.0.1:"+a.arg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(100 * time.Millisecond)
		b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("server", exe)}})
		res := a.finish(t)
		if res["accept"] != "" || res["write"] == "" {
			t.Errorf("an accepted connection of an unbound listener kept sending after its rule tightened: %v", res)
		}
		t.Logf("server %v", res)
	})
}

func testAcceptedCut(t *testing.T) {
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, publicDir(t), "server")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow})
	port := freePort(t)
	done := make(chan net.Conn, 1)
	go func() {
		for i := 0; i < 200; i++ {
			if c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				done <- c
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=" + strconv.Itoa(port)}
	res := runAttacker(t, exe, cg, "", "accepted", env, false, func() {
		b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("server", exe)}})
	})
	if c := <-done; c != nil {
		c.Close()
	}
	if res["accept"] != "" {
		t.Fatalf("accept while allowed: %v", res)
	}
	if res["write"] == "" {
		t.Errorf("an accepted connection kept sending after its rule tightened: %v", res)
	}
	t.Logf("server %v", res)
}

// TestSweepPastDoomedMapSize is issue 13 item 3: more held sockets than
// sock_doomed holds (8,192), with that map left full of stale cookies by
// an earlier sweep, are all cut, and the sweep reports success.
func TestSweepPastDoomedMapSize(t *testing.T) {
	requireKernel(t)
	if sabotaged("sweep_batch") {
		old := sweepBatch
		sweepBatch = math.MaxInt32
		t.Cleanup(func() { sweepBatch = old })
	}
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	exe := clientCopy(t, publicDir(t), "hoarder")
	b.apply(t, &engine.Policy{Default: engine.ActionAllow})
	size := int(b.objs.SockDoomed.MaxEntries())
	// Several holders: one process may not have that many files open here.
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	per := int(lim.Cur) - 100
	holders := (size+4000)/per + 1
	count := per * holders
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=9", "H3_COUNT=" + strconv.Itoa(per)}
	var as []*attacker
	for i := 0; i < holders; i++ {
		a := startAttacker(t, exe, cg, "", "many", env, true)
		if !a.ready(t) {
			t.Fatalf("holder %d: %v", i, a.finish(t))
		}
		as = append(as, a)
	}
	func() {
		if !sabotaged("sweep_batch") {
			// What a sweep that died half way leaves behind.
			for i := 0; i < size; i++ {
				if err := b.objs.SockDoomed.Update(math.MaxUint64-uint64(i), uint8(1), 0); err != nil {
					t.Fatalf("fill sock_doomed: %v", err)
				}
			}
		}
		b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("hoarder", exe)}})
	}()
	alive := 0
	for _, a := range as {
		res := a.finish(t)
		if res["held"] != strconv.Itoa(per) {
			t.Fatalf("holder could not open %d sockets: %v", per, res)
		}
		n, _ := strconv.Atoi(res["alive"])
		alive += n
	}
	if alive != 0 {
		t.Errorf("%d of %d held sockets survived the tightening", alive, count)
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.SweepError != "" {
		t.Errorf("status reports a failed sweep: %s", st.SweepError)
	}
}

// TestUnfinishedSweepIsReported: a sweep that cannot finish shows in the
// backend's state (status, /metrics) and in sync, which retries it.
func TestUnfinishedSweepIsReported(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	b := newTestBackend(t, cg)
	b.apply(t, &engine.Policy{Default: engine.ActionAllow})
	// The destroy pass fails: its iterators are closed.
	b.sockIter[2].Close()
	b.sockIter[3].Close()
	exe := clientCopy(t, publicDir(t), "holder")
	env := []string{"H3_SEG=127.0.0.1", "H3_DST=127.0.0.1", "H3_PORT=9", "H3_COUNT=3"}
	runAttacker(t, exe, cg, "", "many", env, true, func() {
		b.apply(t, &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("holder", exe)}})
		st, _ := b.State(context.Background())
		if st.SweepError == "" {
			t.Errorf("a sweep that could not destroy anything is not reported in the state")
		}
		drift, err := b.Sync(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !hasDrift(drift, "re-judged", false) {
			t.Errorf("sync does not report the unfinished sweep: %+v", drift)
		}
		for i, p := range []*ebpf.Program{b.socks.ExewallDestroyTcp, b.socks.ExewallDestroyUdp} {
			it, err := link.AttachIter(link.IterOptions{Program: p})
			if err != nil {
				t.Fatal(err)
			}
			b.sockIter[2+i] = it
		}
		drift, _ = b.Sync(context.Background(), nil)
		if !hasDrift(drift, "re-judged", true) {
			t.Errorf("sync did not retry the sweep: %+v", drift)
		}
		if st, _ := b.State(context.Background()); st.SweepError != "" {
			t.Errorf("state still reports a failed sweep after sync retried it: %s", st.SweepError)
		}
	})
}

func hasDrift(ds []engine.Drift, what string, repaired bool) bool {
	for _, d := range ds {
		if strings.Contains(d.What, what) && d.Repaired == repaired {
			return true
		}
	}
	return false
}

var _ = errors.New

// TestUpgradeKeepsCuttingHeldConnections: a daemon started on the pins of
// the previous version (no guard links, no sock_heirs) adopts the datapath
// maps, whose layout this change keeps, so a connection held since before
// the upgrade is still cut when its rule tightens.
func TestUpgradeKeepsCuttingHeldConnections(t *testing.T) {
	requireKernel(t)
	cg := scratchCgroup(t)
	pinDir := filepath.Join("/sys/fs/bpf", randName("exewall-test-"))
	t.Cleanup(func() { resetPins(pinDir) })
	old, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, WatchInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Apply(context.Background(), &engine.Policy{Default: engine.ActionAllow}); err != nil {
		t.Fatal(err)
	}
	exe := clientCopy(t, publicDir(t), "holder")
	port := listenEcho(t)
	steps := []attempt{{Proto: "tcp", Op: "hold", Sock: 4, Addr: "127.0.0.1", Port: port}, {Op: "use-held"}, {Op: "ready"}, {Op: "wait"}, {Op: "use-held"}}
	c := startClient(t, exe, cg, steps)
	c.waitReady(t)
	// The old daemon exits, leaving its pins; what this version added is
	// not among them.
	old.Close()
	for _, name := range []string{"link_guard_setsockopt", "link_guard_egress", "link_guard_post_bind4", "link_guard_post_bind6"} {
		if l, err := link.LoadPinnedLink(filepath.Join(pinDir, name), nil); err == nil {
			l.Unpin()
			l.Close()
		}
	}
	os.Remove(filepath.Join(pinDir, "sock_heirs"))
	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true, WatchInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.repin {
		t.Fatalf("the new version found the old pins incompatible: held connections would lose their creators")
	}
	if err := b.Apply(context.Background(), &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{denyRule("holder", exe)}}); err != nil {
		t.Fatal(err)
	}
	out := c.proceed(t)
	if out[0].Errno != "" || out[1].Errno != "" {
		t.Fatalf("connection was not established while allowed: %+v", out)
	}
	if out[4].Errno == "" {
		t.Errorf("a connection held since before the upgrade still flows after the rule tightened")
	}
}
