package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReproducibleFromCleanClones clones HEAD twice, at paths of different
// lengths and names, and builds the image of each: the first with its own
// empty GOCACHE, GOPATH and module cache (every package, the standard
// library included, compiled from nothing), the second with the caller's
// caches. Both must give one digest. The modules come from this machine's
// module cache as a GOPROXY (then the configured proxy), so the test needs
// no network. Uncommitted changes are not in the clones: this is the digest
// of HEAD.
func TestReproducibleFromCleanClones(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles exewall from nothing (one to several minutes on 2 cores)")
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	rev := strings.TrimSpace(string(head))
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	proxy, _ := exec.Command("go", "env", "GOPROXY").Output()
	goproxy := "file://" + filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download")
	if p := strings.TrimSpace(string(proxy)); p != "" && p != "off" {
		goproxy += "," + p
	}
	src, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "") // from the commit

	var digests []string
	for i, clonePath := range []string{"a/exewall", "somewhere/much/deeper/than/the/first/clone/ew"} {
		base := t.TempDir()
		dir := filepath.Join(base, clonePath)
		run(t, "", "git", "clone", "-q", "--no-checkout", src, dir)
		run(t, dir, "git", "-c", "advice.detachedHead=false", "checkout", "-q", rev)
		var env []string
		if i == 0 {
			env = []string{
				"GOCACHE=" + filepath.Join(base, "gocache"),
				"GOPATH=" + filepath.Join(base, "gopath"),
				"GOMODCACHE=" + filepath.Join(base, "gopath", "pkg", "mod"),
				"GOPROXY=" + goproxy,
				"GOFLAGS=-modcacherw", // so that the temporary directory can be removed
				"GOTOOLCHAIN=local",
			}
		}
		r, err := Build(Options{OutDir: filepath.Join(base, "out"), RepoRoot: dir, Arch: runtime.GOARCH, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		if r.Revision != rev {
			t.Errorf("clone %s built revision %s, want %s", clonePath, r.Revision, rev)
		}
		t.Logf("clone at %s: %s (%d bytes)", dir, r.Digest, r.Size)
		digests = append(digests, r.Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("two clean clones of %s gave %s and %s", rev, digests[0], digests[1])
	}
}

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
