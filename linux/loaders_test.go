//go:build linux

package linux

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLoaderPathsSymlinkedDirs: a glob whose directory is a symlink to an
// earlier glob's is not read again (merged /usr: /lib -> usr/lib), and
// globs of distinct directories all are.
func TestLoaderPathsSymlinkedDirs(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib/ld-linux.so.2", "other/lib/ld-musl-x86_64.so.1"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(dir, "lib")); err != nil {
		t.Fatal(err)
	}
	globs, probes := loaderGlobs, loaderProbes
	t.Cleanup(func() { loaderGlobs, loaderProbes = globs, probes })
	loaderProbes = nil
	loaderGlobs = []string{dir + "/lib/ld-*.so*", dir + "/lib/*/ld-*.so*", dir + "/usr/lib/ld-*.so*", dir + "/usr/lib/*/ld-*.so*", dir + "/other/lib/ld-*.so*"}
	got := loaderPaths()
	want := []string{dir + "/lib/ld-linux.so.2", dir + "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", dir + "/other/lib/ld-musl-x86_64.so.1"}
	if !slices.Equal(got, want) {
		t.Fatalf("loader paths %v, want %v", got, want)
	}
}
