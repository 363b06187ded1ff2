//go:build linux

package linux

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// TestTaskStorageIdentityWhereTheKernelAllowsIt: where cgroup programs may
// call bpf_task_storage_get, the datapath keeps identities per thread. A
// datapath grown past the verifier's limits was once taken for a kernel
// without task storage and fell back silently (slower start, coarser
// identities): this fails instead.
func TestTaskStorageIdentityWhereTheKernelAllowsIt(t *testing.T) {
	requireKernel(t)
	if err := features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnTaskStorageGet); err != nil {
		t.Skipf("cgroup programs cannot use task storage here (%v): the fallback is TestIdentityFallbackByThreadGroup's", err)
	}
	b := newTestBackend(t, scratchCgroup(t))
	if b.taskStorage != 1 {
		t.Fatal("identities kept by thread group id on a kernel whose cgroup programs may use task storage: the datapath's load with it failed (see the verifier's log at debug level)")
	}
}

// TestTaskStorageRefusedReadsTheVerdict: only the verifier's refusal of the
// helper means "no task storage"; a dump of a program refused for its size
// names the helper too.
func TestTaskStorageRefusedReadsTheVerdict(t *testing.T) {
	for _, c := range []struct {
		log  []string
		want bool
	}{
		{[]string{"0: (85) call bpf_get_current_task_btf#158", "12: (85) call bpf_task_storage_get#156", "unknown func bpf_task_storage_get#156"}, true},
		{[]string{"12: (85) call bpf_task_storage_get#156", "program of this type cannot use helper bpf_task_storage_get#156"}, true},
		{[]string{"12: (85) call bpf_task_storage_get#156", "BPF program is too large. Processed 1000001 insn"}, false},
		{[]string{"unknown func bpf_sk_storage_get#107"}, false},
	} {
		if got := taskStorageRefused(&ebpf.VerifierError{Log: c.log}); got != c.want {
			t.Errorf("taskStorageRefused(%q) = %v, want %v", c.log, got, c.want)
		}
	}
}

// verifierHeadroom is the most instructions the verifier may walk through
// for one program: a fifth of its 1M limit. An older kernel's verifier
// prunes fewer paths than this one, and a datapath within 10% of the limit
// here (it was, before fill_cache and report became global functions)
// fails to load there, or here after the next feature.
const verifierHeadroom = 200_000

// TestVerifierHeadroom loads the programs as the daemon does and checks
// each stays within verifierHeadroom.
func TestVerifierHeadroom(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	if len(b.progPins) == 0 {
		t.Fatal("no programs loaded")
	}
	for path, p := range b.progPins {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			t.Skip("the kernel does not report verified instructions")
		}
		if n > verifierHeadroom {
			t.Errorf("%s: the verifier walked %d instructions, more than %d (its limit is 1,000,000): move a branchy part into a global function (see fill_cache)", filepath.Base(path), n, verifierHeadroom)
		} else {
			t.Logf("%s: %d", filepath.Base(path), n)
		}
	}
}
