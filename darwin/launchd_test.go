package darwin

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const deployPlist = "../deploy/launchd/" + ServiceLabel + ".plist"

func TestPlistGolden(t *testing.T) {
	got := Plist("/usr/local/bin/exewall", DaemonArgs)
	golden(t, ServiceLabel+".plist.golden", got)
	// The plist committed for packagers is the one the daemon installs.
	if *update {
		if err := os.WriteFile(deployPlist, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(deployPlist); err != nil || string(b) != got {
		t.Errorf("%s differs from Plist (run go test -update): %v", deployPlist, err)
	}
	// Well-formed XML, whatever the path holds.
	odd := Plist("/Applications/A & B <x>.app/exewall", DaemonArgs)
	d := xml.NewDecoder(strings.NewReader(odd))
	d.Strict = true
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("plist is not well-formed XML: %v", err)
			}
			break
		}
	}
	if !strings.Contains(odd, "<string>/Applications/A &amp; B &lt;x&gt;.app/exewall</string>") {
		t.Errorf("path not escaped:\n%s", odd)
	}
}

func newFakeLaunchd(t *testing.T) string {
	t.Helper()
	newFakePF(t) // puts testdata/bin on PATH
	dir := t.TempDir()
	t.Setenv("FAKE_LAUNCHD_STATE", dir)
	return dir
}

func launchdCalls(t *testing.T, dir string) []string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	os.Remove(filepath.Join(dir, "calls"))
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestServiceInstallUninstall(t *testing.T) {
	state := newFakeLaunchd(t)
	ctx := context.Background()
	plist := filepath.Join(t.TempDir(), "LaunchDaemons", ServiceLabel+".plist")
	s := &Service{Launchctl: Command("launchctl"), Path: plist}

	if err := s.Install(ctx, "relative/exewall"); err == nil {
		t.Error("Install accepted a relative executable path")
	}
	if err := s.Install(ctx, "/usr/local/bin/exewall"); err != nil {
		t.Fatal(err)
	}
	want := []string{"bootout system/" + ServiceLabel, "enable system/" + ServiceLabel, "bootstrap system " + plist}
	if got := launchdCalls(t, state); !slices.Equal(got, want) {
		t.Errorf("launchctl calls:\n got %q\nwant %q", got, want)
	}
	b, err := os.ReadFile(plist)
	if err != nil || string(b) != Plist("/usr/local/bin/exewall", DaemonArgs) {
		t.Errorf("plist not written: %v", err)
	}
	if fi, _ := os.Stat(plist); fi.Mode().Perm() != 0o644 {
		t.Errorf("plist mode %v, want 0644", fi.Mode().Perm())
	}

	// Reinstalling restarts the loaded service with the new plist.
	if err := s.Install(ctx, "/opt/exewall/bin/exewall"); err != nil {
		t.Fatal(err)
	}
	launchdCalls(t, state)

	if err := s.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if got := launchdCalls(t, state); !slices.Equal(got, []string{"bootout system/" + ServiceLabel}) {
		t.Errorf("launchctl calls: %q", got)
	}
	if _, err := os.Stat(plist); !os.IsNotExist(err) {
		t.Errorf("plist left behind: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "loaded")); len(b) != 0 {
		t.Errorf("services left loaded: %q", b)
	}
	// Uninstalling again is fine.
	if err := s.Uninstall(ctx); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
}
