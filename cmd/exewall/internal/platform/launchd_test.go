package platform

import (
	"context"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and deploy/launchd's plist")

const deployPlist = "../../../../deploy/launchd/" + launchdLabel + ".plist"

func TestPlistGolden(t *testing.T) {
	got := plist("/usr/local/bin/exewall", launchdArgs)
	golden := filepath.Join("testdata", launchdLabel+".plist.golden")
	// The plist committed for packagers is the one the daemon installs.
	for _, path := range []string{golden, deployPlist} {
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != got {
			t.Errorf("%s differs from plist() (run go test -update and review the diff): %v", path, err)
		}
	}
	if !slices.Contains(launchdArgs, darwinSocket) || darwinSocket != "/var/run/exewall/exewall.sock" {
		t.Errorf("the LaunchDaemon must listen where the CLI looks: %q", launchdArgs)
	}
	// Well-formed XML, whatever the path holds.
	odd := plist("/Applications/A & B <x>.app/exewall", launchdArgs)
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

func newFakeLaunchd(t *testing.T) (*launchd, string) {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("testdata", "bin", "launchctl"))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	t.Setenv("FAKE_LAUNCHD_STATE", state)
	plist := filepath.Join(t.TempDir(), "LaunchDaemons", launchdLabel+".plist")
	return &launchd{launchctl: bin, path: plist, safe: func(string) error { return nil }}, state
}

func launchdCalls(t *testing.T, dir string) []string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	os.Remove(filepath.Join(dir, "calls"))
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestLaunchdInstallUninstall(t *testing.T) {
	s, state := newFakeLaunchd(t)
	ctx := context.Background()

	if err := s.install(ctx, "relative/exewall"); err == nil {
		t.Error("install accepted a relative executable path")
	}
	if err := s.install(ctx, "/usr/local/bin/exewall"); err != nil {
		t.Fatal(err)
	}
	want := []string{"bootout system/" + launchdLabel, "enable system/" + launchdLabel, "bootstrap system " + s.path}
	if got := launchdCalls(t, state); !slices.Equal(got, want) {
		t.Errorf("launchctl calls:\n got %q\nwant %q", got, want)
	}
	b, err := os.ReadFile(s.path)
	if err != nil || string(b) != plist("/usr/local/bin/exewall", launchdArgs) {
		t.Errorf("plist not written: %v", err)
	}
	if fi, _ := os.Stat(s.path); fi.Mode().Perm() != 0o644 {
		t.Errorf("plist mode %v, want 0644", fi.Mode().Perm())
	}

	// Reinstalling restarts the loaded service with the new plist.
	if err := s.install(ctx, "/opt/exewall/bin/exewall"); err != nil {
		t.Fatal(err)
	}
	launchdCalls(t, state)

	if err := s.uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if got := launchdCalls(t, state); !slices.Equal(got, []string{"bootout system/" + launchdLabel}) {
		t.Errorf("launchctl calls: %q", got)
	}
	if _, err := os.Stat(s.path); !os.IsNotExist(err) {
		t.Errorf("plist left behind: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "loaded")); len(b) != 0 {
		t.Errorf("services left loaded: %q", b)
	}
	// Uninstalling again is fine.
	if err := s.uninstall(ctx); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

// TestLaunchdRefusesUnsafeBinary: the LaunchDaemon runs as root, so a
// binary that a non-root user could replace is refused before anything is
// written or started.
func TestLaunchdRefusesUnsafeBinary(t *testing.T) {
	s, state := newFakeLaunchd(t)
	s.safe = checkInstallPath
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "exewall")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := s.install(context.Background(), exe)
	if err == nil || !strings.Contains(err.Error(), "writable by") {
		t.Fatalf("install from a world-writable directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "calls")); len(b) != 0 {
		t.Errorf("launchctl called: %q", b)
	}
	if _, err := os.Stat(s.path); !os.IsNotExist(err) {
		t.Errorf("plist written: %v", err)
	}
}
