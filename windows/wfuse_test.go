package windows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoMisreadingWFCalls keeps the backend off the github.com/tailscale/wf
// calls that fail on real machines: Rule.KernelID is read at the wrong
// offset of FWPM_FILTER0 (tailscale/wf#22), so drops would match no filter;
// Session.Rules lists every filter on the system and fails on condition
// types wf cannot parse (tailscale/wf#23), which would break apply, sync
// and reset; Session.DropEvents re-reads WFP's whole event buffer. exewall
// uses internal/fwpm for these (filters of its own provider, drop events by
// subscription).
func TestNoMisreadingWFCalls(t *testing.T) {
	files, err := filepath.Glob("*_windows.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no windows files: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{".KernelID", "sess.Rules()", ".DropEvents()"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", f, bad)
			}
		}
	}
}
