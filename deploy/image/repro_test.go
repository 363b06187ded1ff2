package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReproducibleFromCleanClones clones HEAD twice, at paths of different
// lengths and names, and runs `go run ./deploy/image` in each with its own
// empty GOCACHE, GOPATH and module cache: both must give one digest. The
// modules come from this machine's module cache as a GOPROXY (then the
// configured proxy), so the test needs no network, but every package is
// compiled from nothing in each clone. Uncommitted changes are not in the
// clones: this is the digest of HEAD.
func TestReproducibleFromCleanClones(t *testing.T) {
	if testing.Short() {
		t.Skip("builds exewall twice from nothing (about a minute on 2 cores)")
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

	var digests []string
	for _, clonePath := range []string{"a/exewall", "somewhere/much/deeper/than/the/first/clone/ew"} {
		base := t.TempDir()
		dir := filepath.Join(base, clonePath)
		run(t, "", nil, "git", "clone", "-q", "--no-checkout", src, dir)
		run(t, dir, nil, "git", "-c", "advice.detachedHead=false", "checkout", "-q", rev)
		env := []string{
			"GOCACHE=" + filepath.Join(base, "gocache"),
			"GOPATH=" + filepath.Join(base, "gopath"),
			"GOMODCACHE=" + filepath.Join(base, "gopath", "pkg", "mod"),
			"GOPROXY=" + goproxy,
			"GOFLAGS=-modcacherw", // so that the temporary directory can be removed
			"GOTOOLCHAIN=local",
			"SOURCE_DATE_EPOCH=", // from the commit
		}
		out := run(t, dir, env, "go", "run", "./deploy/image", "-json", "-out", filepath.Join(base, "out"))
		var r Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %s", err, out)
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

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
