//go:build linux

package container

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/exewall/exewall/linux"
)

// skipOrFail skips a test that cannot run here and fails it under CI
// (CI=true), where a silent skip would hide a broken setup.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the container runtime test cannot run under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

func randName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// podman runs podman on a storage of its own (nothing the host's podman
// holds is seen or touched), with the runtime and flags that work here:
//   - --cgroup-manager=cgroupfs, --events-backend=file: there is no systemd;
//   - a runtime probed in order crun, runc: crun 1.8 refuses hybrid hosts
//     (cgroup v1 with cgroup v2 at /sys/fs/cgroup/unified) whose cgroup v2
//     lists a controller ("cgroups in hybrid mode not supported"); runc runs;
//   - --cgroup-parent: the container's cgroups live under a parent of the
//     test's own, removed at the end, instead of podman's libpod_parent;
//   - --ulimit: podman asks for RLIMIT_NOFILE 1048576, and conmon runs with
//     RLIMIT_NPROC lowered to pid_max; without CAP_SYS_RESOURCE (root on
//     this VM lacks it) the runtime cannot raise either, so the container
//     gets the test's own hard limits.
type podman struct {
	t       *testing.T
	global  []string // before the subcommand
	runOpts []string // for every run: cgroup parent, ulimits
	runtime string
	parent  string // the cgroup parent's name
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		skipOrFail(t, "podman is not installed (make deps installs it): %v", err)
	}
	// Short: podman refuses a runroot longer than 50 characters.
	dir, err := os.MkdirTemp("", "exewall-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("podman's storage: %v", err)
		}
	})
	p := &podman{t: t, parent: randName("exewall-image-podman-")}
	p.global = []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "libpod"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	var nofile, nproc unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	if data, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if pidMax, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && pidMax < nproc.Max {
			nproc.Max = pidMax
		}
	}
	p.runOpts = []string{"--cgroup-parent=/" + p.parent,
		fmt.Sprintf("--ulimit=nofile=%d:%d", nofile.Max, nofile.Max),
		fmt.Sprintf("--ulimit=nproc=%d:%d", nproc.Max, nproc.Max)}
	t.Cleanup(p.removeParent)
	return p
}

// cmd runs podman and returns its stdout, stderr and error.
func (p *podman) cmd(args ...string) (string, string, error) {
	all := append(append([]string{}, p.global...), args...)
	if p.runtime != "" {
		all = append([]string{"--runtime", p.runtime}, all...)
	}
	c := exec.Command("podman", all...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	return out.String(), errOut.String(), err
}

// must runs podman and fails the test unless it exits 0.
func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, errOut, err := p.cmd(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// run is `podman run` with the test's cgroup parent and limits.
func (p *podman) run(flags []string, image string, args ...string) (string, string, error) {
	all := append(append(append([]string{"run"}, p.runOpts...), flags...), image)
	return p.cmd(append(all, args...)...)
}

// chooseRuntime picks the first runtime that runs image's --version.
func (p *podman) chooseRuntime(image string) {
	p.t.Helper()
	var why []string
	for _, rt := range []string{"crun", "runc"} {
		if _, err := exec.LookPath(rt); err != nil {
			why = append(why, rt+": not installed")
			continue
		}
		p.runtime = rt
		out, errOut, err := p.run([]string{"--rm"}, image, "--version")
		if err == nil && strings.HasPrefix(out, "exewall version ") {
			p.t.Logf("runtime %s: %s", rt, strings.TrimSpace(out))
			return
		}
		why = append(why, fmt.Sprintf("%s: %v %s", rt, err, strings.TrimSpace(errOut)))
		p.runtime = ""
	}
	skipOrFail(p.t, "podman cannot run a container here: %s", strings.Join(why, "; "))
}

// removeParent removes the cgroup parent from every hierarchy, deepest
// directories first (podman leaves it behind, emptied).
func (p *podman) removeParent() {
	for _, root := range cgroupMounts() {
		top := filepath.Join(root, p.parent)
		var dirs []string
		filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				p.t.Errorf("cgroup %s left behind: %v", dirs[i], err)
			}
		}
	}
}

// cgroupMounts lists where cgroup (v1) and cgroup2 hierarchies are mounted.
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, after, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(sc.Text())
		if !ok || len(fields) < 5 {
			continue
		}
		if typ, _, _ := strings.Cut(after, " "); typ == "cgroup" || typ == "cgroup2" {
			out = append(out, fields[4])
		}
	}
	return out
}

// unmountUnder unmounts what podman may have left mounted under dir.
func unmountUnder(t *testing.T, dir string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		t.Logf("unmounting %s left by podman", points[i])
		syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// imageResult is what `go run ./deploy/image -json` prints.
type imageResult struct {
	Digest       string `json:"digest"`
	ConfigDigest string `json:"config_digest"`
	Ref          string `json:"ref"`
	Archive      string `json:"archive"`
	Size         int64  `json:"size"`
	UnpackedSize int64  `json:"unpacked_size"`
}

// buildImage runs `go run ./deploy/image` into dir.
func buildImage(t *testing.T, dir string) imageResult {
	t.Helper()
	cmd := exec.Command("go", "run", "./deploy/image", "-json", "-out", dir)
	cmd.Dir = "../.."
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./deploy/image: %v\n%s", err, errOut.String())
	}
	var r imageResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return r
}

// requireRoot skips (or fails under CI) without root and cgroup v2.
func requireRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "the container runtime test loads eBPF and runs podman as root (sudo make test)")
	}
	root, err := linux.CgroupMount()
	if err != nil {
		skipOrFail(t, "%v", err)
	}
	return root
}
