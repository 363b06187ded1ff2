// Command deb builds exewall's Debian package with nfpm:
//
//	go run ./deploy/deb [-version V] [-arch A] [-binary PATH] [-out DIR]
//
// The package installs /usr/bin/exewall, the systemd unit from
// deploy/systemd (its ExecStart pointed at /usr/bin), an empty-default
// policy as the conffile /etc/exewall/policy.yaml (the daemon writes the
// live policy back there) and examples/policy.yaml as
// /usr/share/doc/exewall/policy.example.yaml. The maintainer scripts in
// scripts/ enable and start the unit where systemd runs, stop it and remove
// exewall's kernel state on removal, and remove /etc/exewall and
// /var/lib/exewall on purge. It prints the package's path.
package main

import (
	"embed"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/exewall/exewall/deploy/systemd"
	"github.com/exewall/exewall/engine"
)

//go:embed scripts
var scripts embed.FS

// BinPath is where the package installs the binary.
const BinPath = "/usr/bin/exewall"

// UnitPath is where the package installs the unit (Debian's place for
// packaged units).
const UnitPath = "/lib/systemd/system/exewall.service"

func main() {
	var o Options
	flag.StringVar(&o.Version, "version", "", "package version (default: from git describe, else 0.0.0~dev)")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "Debian architecture (Go's GOARCH names: amd64, arm64)")
	flag.StringVar(&o.Binary, "binary", "", "the exewall binary to package (default: build ./cmd/exewall for -arch)")
	flag.StringVar(&o.OutDir, "out", "dist", "directory for the .deb")
	flag.StringVar(&o.RepoRoot, "root", ".", "the repository's root")
	flag.Parse()
	path, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// Options says what to build.
type Options struct {
	Version, Arch, Binary, OutDir, RepoRoot string
}

// Build writes the package and returns its path.
func Build(o Options) (string, error) {
	if o.RepoRoot == "" {
		o.RepoRoot = "."
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Version == "" {
		o.Version = gitVersion(o.RepoRoot)
	}
	tmp, err := os.MkdirTemp("", "exewall-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if o.Binary == "" {
		o.Binary = filepath.Join(tmp, "exewall")
		cmd := exec.Command("go", "build", "-trimpath", "-o", o.Binary,
			"-ldflags", "-s -w -X github.com/exewall/exewall/cmd/exewall/internal/app.Version="+o.Version, "./cmd/exewall")
		cmd.Dir = o.RepoRoot
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+o.Arch, "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("build exewall: %w", err)
		}
	}

	// The unit stays one file (deploy/systemd); only its ExecStart moves.
	if !strings.Contains(systemd.Unit, "ExecStart="+systemd.ExecPath+" ") {
		return "", fmt.Errorf("deploy/systemd/exewall.service has no ExecStart=%s line to point at %s", systemd.ExecPath, BinPath)
	}
	unit := strings.Replace(systemd.Unit, "ExecStart="+systemd.ExecPath+" ", "ExecStart="+BinPath+" ", 1)
	unit = strings.Replace(unit, "# Installed to /etc/systemd/system/exewall.service by `exewall service install`\n# (which embeds this file and points ExecStart at itself) or `make install`.\n",
		"# Installed by the exewall Debian package.\n", 1)
	policy := append([]byte("# Installed by the exewall Debian package: no rules, nothing blocked.\n"+
		"# Examples: /usr/share/doc/exewall/policy.example.yaml; rollout: learn, review, audit, enforce\n"+
		"# (/usr/share/doc/exewall/operations.md).\n"), engine.DefaultPolicyFile...)
	write := map[string][]byte{"exewall.service": []byte(unit), "policy.yaml": policy}
	for name, data := range write {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return "", err
		}
	}
	scriptPath := map[string]string{}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		data, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return "", err
		}
		scriptPath[name] = filepath.Join(tmp, name)
		if err := os.WriteFile(scriptPath[name], data, 0o755); err != nil {
			return "", err
		}
	}

	info := &nfpm.Info{
		Name:          "exewall",
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "exewall maintainers <maintainers@exewall.invalid>",
		Homepage:      "https://github.com/exewall/exewall",
		License:       "Apache-2.0",
		Description: "per-executable network firewall (eBPF)\n" +
			"exewall decides, per executable, which networks a program may reach; the\n" +
			"kernel enforces it on every connect() and sendmsg() with eBPF cgroup hooks.",
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: o.Binary, Destination: BinPath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: filepath.Join(tmp, "exewall.service"), Destination: UnitPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(tmp, "policy.yaml"), Destination: "/etc/exewall/policy.yaml", Type: files.TypeConfigNoReplace,
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(o.RepoRoot, "examples", "policy.yaml"), Destination: "/usr/share/doc/exewall/policy.example.yaml",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(o.RepoRoot, "docs", "operations.md"), Destination: "/usr/share/doc/exewall/operations.md",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(o.RepoRoot, "README.md"), Destination: "/usr/share/doc/exewall/README.md",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
			},
			Scripts: nfpm.Scripts{
				PostInstall: scriptPath["postinst"],
				PreRemove:   scriptPath["prerm"],
				PostRemove:  scriptPath["postrm"],
			},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("package contents: %w", err)
	}
	pkgr, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, pkgr.ConventionalFileName(info))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	return out, f.Close()
}

// gitVersion is a Debian version from `git describe` (v1.2.3-4-gabc ->
// 1.2.3+4.gabc), or 0.0.0~dev outside a tagged checkout.
func gitVersion(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--tags", "--match", "v[0-9]*").Output()
	if err != nil {
		return "0.0.0~dev"
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if base, rest, ok := strings.Cut(v, "-"); ok {
		v = base + "+" + strings.ReplaceAll(rest, "-", ".")
	}
	return v
}
