package platform

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	unit "github.com/exewall/exewall/deploy/systemd"
)

// fakeHost is a scratch root with the host's layout and a systemctl that
// records its calls.
type fakeHost struct {
	root  string
	calls [][]string
	out   bytes.Buffer
	s     *systemd
}

func newFakeHost(t *testing.T, booted bool) *fakeHost {
	t.Helper()
	h := &fakeHost{root: t.TempDir()}
	h.s = &systemd{
		unitDir: filepath.Join(h.root, "etc/systemd/system"),
		runDir:  filepath.Join(h.root, "run/systemd/system"),
		systemctl: func(_ context.Context, args ...string) error {
			h.calls = append(h.calls, args)
			return nil
		},
		out: &h.out,
	}
	if booted {
		if err := os.MkdirAll(h.s.runDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *fakeHost) unit(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.root, "etc/systemd/system/exewall.service"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestInstallWritesUnitAndStartsIt(t *testing.T) {
	h := newFakeHost(t, true)
	if err := h.s.install(context.Background(), unit.ExecPath); err != nil {
		t.Fatal(err)
	}
	// The binary at the shipped path gets the shipped unit, byte for byte.
	shipped, err := os.ReadFile("../../../../deploy/systemd/exewall.service")
	if err != nil {
		t.Fatal(err)
	}
	if got := h.unit(t); got != string(shipped) {
		t.Errorf("unit differs from deploy/systemd/exewall.service:\n%s", got)
	}
	want := [][]string{{"daemon-reload"}, {"enable", "--now", "exewall"}}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("systemctl calls %q, want %q", h.calls, want)
	}
	if fi, err := os.Stat(filepath.Join(h.s.unitDir, "exewall.service")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v, %v", fi.Mode(), err)
	}
	if !strings.Contains(h.out.String(), "enabled and started") {
		t.Errorf("output:\n%s", h.out.String())
	}
}

func TestInstallPointsExecStartAtThisBinary(t *testing.T) {
	h := newFakeHost(t, true)
	if err := h.s.install(context.Background(), "/opt/exewall/bin/exewall"); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(unit.Unit, "\nExecStart=/usr/local/bin/exewall daemon\n", "\nExecStart=/opt/exewall/bin/exewall daemon\n", 1)
	if got := h.unit(t); got != want || got == unit.Unit {
		t.Errorf("unit:\n%s", got)
	}
	// A reinstall rewrites the unit and runs the same sequence again.
	if err := h.s.install(context.Background(), unit.ExecPath); err != nil {
		t.Fatal(err)
	}
	if got := h.unit(t); got != unit.Unit {
		t.Errorf("reinstalled unit:\n%s", got)
	}
	if len(h.calls) != 4 {
		t.Errorf("systemctl calls %q", h.calls)
	}
	if entries, _ := os.ReadDir(h.s.unitDir); len(entries) != 1 {
		t.Errorf("unit dir holds %v", entries)
	}
}

func TestInstallWithoutSystemd(t *testing.T) {
	h := newFakeHost(t, false)
	if err := h.s.install(context.Background(), unit.ExecPath); err != nil {
		t.Fatal(err)
	}
	if h.unit(t) != unit.Unit {
		t.Error("unit not written")
	}
	if h.calls != nil {
		t.Errorf("systemctl called without systemd: %q", h.calls)
	}
	if out := h.out.String(); !strings.Contains(out, "systemd is not running") || !strings.Contains(out, "systemctl enable --now exewall") {
		t.Errorf("output does not say what to do:\n%s", out)
	}
}

func TestInstallRefusesPathsTheServiceCannotRun(t *testing.T) {
	for _, exe := range []string{"/home/me/go/bin/exewall", "/root/exewall", "/tmp/go-build1/b001/exe/exewall", "/opt/my tools/exewall", "/opt/50%/exewall"} {
		h := newFakeHost(t, true)
		err := h.s.install(context.Background(), exe)
		if err == nil {
			t.Errorf("%s: installed", exe)
			continue
		}
		if !strings.Contains(err.Error(), unit.ExecPath) {
			t.Errorf("%s: %v (does not say where to install)", exe, err)
		}
		if _, serr := os.Stat(filepath.Join(h.s.unitDir, "exewall.service")); serr == nil || h.calls != nil {
			t.Errorf("%s: refused but wrote the unit or ran systemctl %q", exe, h.calls)
		}
	}
}

func TestUninstall(t *testing.T) {
	h := newFakeHost(t, true)
	if err := h.s.uninstall(context.Background()); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("uninstall of nothing: %v", err)
	}
	if err := h.s.install(context.Background(), unit.ExecPath); err != nil {
		t.Fatal(err)
	}
	h.calls, h.out = nil, bytes.Buffer{}
	if err := h.s.uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"disable", "--now", "exewall"}, {"daemon-reload"}}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("systemctl calls %q, want %q", h.calls, want)
	}
	if _, err := os.Stat(filepath.Join(h.s.unitDir, "exewall.service")); !os.IsNotExist(err) {
		t.Errorf("unit still there: %v", err)
	}
	if !strings.Contains(h.out.String(), "exewall reset") {
		t.Errorf("uninstall does not say enforcement stays:\n%s", h.out.String())
	}

	// Without systemd: the unit is removed, systemctl left alone.
	h = newFakeHost(t, false)
	if err := h.s.install(context.Background(), unit.ExecPath); err != nil {
		t.Fatal(err)
	}
	if err := h.s.uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.calls != nil {
		t.Errorf("systemctl called without systemd: %q", h.calls)
	}
}
