//go:build linux

package linux

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/engine"
	"github.com/exewall/exewall/test/kerneltest"
)

// TestRetiredInboundSendHooksDetached: an earlier version pinned in_send4/6
// links (a second sendmsg program noting UDP peers). A daemon of this
// version taking over removes them: the datapath's own sendmsg programs
// note the peers now, and the old program must not keep running beside.
func TestRetiredInboundSendHooksDetached(t *testing.T) {
	requireKernel(t)
	kerneltest.RequireTool(t, "bpftool")
	cg := scratchCgroup(t)
	pinDir := scratchPinDir(t)
	deny := &engine.Policy{Default: engine.ActionAllow, Rules: []engine.Rule{{Name: "u", Selector: engine.Selector{User: "nobody"}, Action: engine.ActionDeny}}}
	b, err := New(context.Background(), Config{Cgroup: cg, PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(context.Background(), deny); err != nil {
		b.Close()
		t.Fatal(err)
	}
	// What the earlier daemon left: its in_send programs attached, pinned
	// where it pinned them.
	for _, h := range []struct {
		name   string
		attach ebpf.AttachType
	}{{"in_send4", ebpf.AttachCGroupUDP4Sendmsg}, {"in_send6", ebpf.AttachCGroupUDP6Sendmsg}} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "old_" + h.name, Type: ebpf.CGroupSockAddr, AttachType: h.attach, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		})
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: h.attach, Program: prog})
		prog.Close()
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		if err := l.Pin(b.inboundPin(h.name)); err != nil {
			l.Close()
			b.Close()
			t.Fatal(err)
		}
		l.Close()
	}
	b.Close()
	if n := oldSendPrograms(t, cg); n != 2 {
		t.Fatalf("setup: %d old in_send programs attached, want 2", n)
	}

	b, err = New(context.Background(), Config{Cgroup: cg, PinDir: pinDir, DetachOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n := oldSendPrograms(t, cg); n != 0 {
		t.Errorf("restarted: %d old in_send programs still attached", n)
	}
	for _, name := range retiredInboundHooks {
		if _, err := os.Stat(b.inboundPin(name)); err == nil {
			t.Errorf("restarted: pin of retired hook %s still there", name)
		}
	}
	if n := len(b.inboundLinks); n != len(inboundHooks) {
		t.Errorf("restarted: %d inbound hooks adopted, want %d", n, len(inboundHooks))
	}
}

// oldSendPrograms counts the programs TestRetiredInboundSendHooksDetached
// attached as an earlier version's in_send hooks.
func oldSendPrograms(t *testing.T, cg string) int {
	out, err := exec.Command("bpftool", "cgroup", "show", cg).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "old_in_send")
}
