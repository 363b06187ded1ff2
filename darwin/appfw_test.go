package darwin

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func (f *fakePF) alfCalls() []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.state, "alf-calls"))
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	os.Remove(filepath.Join(f.state, "alf-calls"))
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (f *fakePF) wantALF(want ...string) {
	f.t.Helper()
	if got := f.alfCalls(); !slices.Equal(got, want) {
		f.t.Errorf("socketfilterfw calls:\n got %q\nwant %q", got, want)
	}
}

// alfApps lists the firewall's programs, sorted, one "allow|block PATH"
// per line.
func (f *fakePF) alfApps() string {
	b, _ := os.ReadFile(filepath.Join(f.state, "alf-apps"))
	lines := strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
	slices.Sort(lines)
	return strings.ReplaceAll(strings.Join(lines, "\n"), "_", " ")
}

func (f *fakePF) alfGlobal() string {
	b, err := os.ReadFile(filepath.Join(f.state, "alf-global"))
	if err != nil {
		return "off"
	}
	return strings.TrimSpace(string(b))
}

// TestAppFirewallExactCommands: exewall adds and blocks only the programs
// it manages, records what the list said before and puts it back when the
// rule goes and at reset, leaves other entries alone, and has the firewall
// on only while it blocks something, then as it found it.
func TestAppFirewallExactCommands(t *testing.T) {
	f := newFakePF(t)
	t.Setenv("FAKE_ALF_ANYPATH", "1")
	ctx := context.Background()
	dir := t.TempDir()
	// Someone else's entries: an allowed one exewall will block, a blocked
	// one it will block too, and one it never touches.
	f.write("alf-apps", "allow /usr/bin/ssh\nblock /usr/bin/nc\nallow /Applications/Other.app\n")
	a := &appFirewall{Tool: command("socketfilterfw"), StateDir: dir}

	if err := a.Apply(ctx, []string{"/usr/bin/curl", "/usr/bin/nc", "/usr/bin/ssh"}); err != nil {
		t.Fatal(err)
	}
	f.wantALF("--listapps",
		"--add /usr/bin/curl", "--blockapp /usr/bin/curl",
		"--blockapp /usr/bin/nc",
		"--blockapp /usr/bin/ssh",
		"--getglobalstate", "--setglobalstate on")
	if got := f.alfApps(); got != "allow /Applications/Other.app\nblock /usr/bin/curl\nblock /usr/bin/nc\nblock /usr/bin/ssh" || f.alfGlobal() != "on" {
		t.Fatalf("firewall after apply: %s global %s", got, f.alfGlobal())
	}
	// The same set again changes nothing.
	if err := a.Apply(ctx, []string{"/usr/bin/curl", "/usr/bin/nc", "/usr/bin/ssh"}); err != nil {
		t.Fatal(err)
	}
	f.wantALF()

	// A restarted daemon knows what it changed: rm of ssh's and curl's
	// rules gives back an allowed ssh and no curl entry.
	a = &appFirewall{Tool: command("socketfilterfw"), StateDir: dir}
	if got := a.Blocked(); !slices.Equal(got, []string{"/usr/bin/curl", "/usr/bin/nc", "/usr/bin/ssh"}) {
		t.Fatalf("blocked after restart: %v", got)
	}
	if err := a.Apply(ctx, []string{"/usr/bin/nc"}); err != nil {
		t.Fatal(err)
	}
	f.wantALF("--remove /usr/bin/curl", "--unblockapp /usr/bin/ssh")
	if got := f.alfApps(); got != "allow /Applications/Other.app\nallow /usr/bin/ssh\nblock /usr/bin/nc" {
		t.Fatalf("firewall after rm: %s", got)
	}

	// Reset: nc was blocked before exewall, and stays so; the firewall goes
	// back off, as exewall found it.
	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	f.wantALF("--setglobalstate off")
	if got := f.alfApps(); got != "allow /Applications/Other.app\nallow /usr/bin/ssh\nblock /usr/bin/nc" || f.alfGlobal() != "off" {
		t.Fatalf("firewall after reset: %s global %s", got, f.alfGlobal())
	}
	if _, err := os.Stat(filepath.Join(dir, appfwFile)); !os.IsNotExist(err) {
		t.Errorf("state file left after reset: %v", err)
	}
}

// TestAppFirewallLeavesItOn: a firewall that was on before exewall stays on
// when exewall blocks nothing any more.
func TestAppFirewallLeavesItOn(t *testing.T) {
	f := newFakePF(t)
	t.Setenv("FAKE_ALF_ANYPATH", "1")
	f.write("alf-global", "on\n")
	ctx := context.Background()
	a := &appFirewall{Tool: command("socketfilterfw"), StateDir: t.TempDir()}
	if err := a.Apply(ctx, []string{"/usr/bin/curl"}); err != nil {
		t.Fatal(err)
	}
	f.wantALF("--listapps", "--add /usr/bin/curl", "--blockapp /usr/bin/curl", "--getglobalstate")
	if err := a.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f.wantALF("--remove /usr/bin/curl")
	if f.alfGlobal() != "on" || f.alfApps() != "" {
		t.Fatalf("global %s apps %q", f.alfGlobal(), f.alfApps())
	}
}
