package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/engine"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed under CI: %v", tool, err)
			}
			t.Skipf("%s is needed: %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPackage builds the package, checks it with dpkg-deb, and installs,
// removes and purges it in a fresh root with dpkg --root, so the
// maintainer scripts really run (chrootless, told the root by DPKG_ROOT:
// they must never touch the host then).
func TestPackage(t *testing.T) {
	need(t, "dpkg-deb", "dpkg", "go")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing into a fresh root with dpkg needs root")
		}
		t.Skip("installing into a fresh root with dpkg needs root")
	}
	out := t.TempDir()
	deb, err := Build(Options{Version: "1.2.3~test", OutDir: out, RepoRoot: "../.."})
	if err != nil {
		t.Fatal(err)
	}

	contents := run(t, "dpkg-deb", "-c", deb)
	for _, want := range []string{"./usr/bin/exewall", "./lib/systemd/system/exewall.service", "./etc/exewall/policy.yaml",
		"./usr/share/doc/exewall/policy.example.yaml", "./usr/share/doc/exewall/operations.md"} {
		if !strings.Contains(contents, " "+want+"\n") {
			t.Errorf("package lacks %s:\n%s", want, contents)
		}
	}
	if !strings.Contains(contents, "-rwxr-xr-x root/root") {
		t.Errorf("binary not 0755 root:\n%s", contents)
	}
	info := run(t, "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: exewall", "Version: 1.2.3~test", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	if conf := run(t, "dpkg-deb", "-f", deb, "Package"); strings.TrimSpace(conf) != "exewall" {
		t.Errorf("Package field %q", conf)
	}
	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	if data, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); strings.TrimSpace(string(data)) != "/etc/exewall/policy.yaml" {
		t.Errorf("conffiles: %q", data)
	}

	// A fresh root: just dpkg's database.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		os.WriteFile(filepath.Join(root, f), nil, 0o644)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends",
			"--force-bad-path", "--force-unsafe-io", "--log=" + filepath.Join(root, "dpkg.log")}, args...)...)
	}
	dpkg("-i", deb)
	exe := filepath.Join(root, "usr/bin/exewall")
	if v := run(t, exe, "--version"); !strings.Contains(v, "1.2.3~test") {
		t.Errorf("installed binary says %q", v)
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/exewall.service"))
	if err != nil || !strings.Contains(string(unit), "\nExecStart=/usr/bin/exewall daemon\n") {
		t.Errorf("installed unit (%v):\n%s", err, unit)
	}
	policy, err := os.ReadFile(filepath.Join(root, "etc/exewall/policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := engine.Parse(policy); err != nil || p.Default != engine.ActionAllow || len(p.Rules) != 0 {
		t.Errorf("installed policy: %+v %v", p, err)
	}
	// postinst ran: state dir, and the unit enabled (no systemd here).
	if fi, err := os.Stat(filepath.Join(root, "var/lib/exewall")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("postinst did not create /var/lib/exewall 0700: %v %v", fi, err)
	}
	link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/exewall.service")
	if target, err := os.Readlink(link); err != nil || target != "/lib/systemd/system/exewall.service" {
		t.Errorf("postinst did not enable the unit: %q %v", target, err)
	}
	if status := run(t, "dpkg", "--root="+root, "-s", "exewall"); !strings.Contains(status, "Status: install ok installed") {
		t.Errorf("dpkg -s:\n%s", status)
	}

	// Reinstall (an upgrade of the same version): scripts take the upgrade path.
	dpkg("-i", deb)

	// Remove keeps the conffile, drops the binary and the enablement.
	os.WriteFile(filepath.Join(root, "etc/exewall/policy.yaml"), append(policy, "# edited\n"...), 0o644)
	dpkg("-r", "exewall")
	if _, err := os.Stat(exe); !os.IsNotExist(err) {
		t.Errorf("binary left after remove: %v", err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("unit still enabled after remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/exewall/policy.yaml")); err != nil {
		t.Errorf("conffile removed by remove (only purge may): %v", err)
	}
	// Purge removes the policy and the state.
	dpkg("-P", "exewall")
	for _, d := range []string{"etc/exewall", "var/lib/exewall"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("/%s left after purge: %v", d, err)
		}
	}
}
