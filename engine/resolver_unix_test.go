//go:build unix

package engine

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestKernelDev(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel encoding is Linux's")
	}
	// glibc's makedev, which is what stat(2) reports in st_dev.
	makedev := func(major, minor uint64) uint64 {
		return (major&0xfffff000)<<32 | (major&0xfff)<<8 | (minor&0xffffff00)<<12 | minor&0xff
	}
	for _, tc := range []struct{ major, minor uint64 }{{8, 1}, {0, 33}, {259, 0x12345}, {0xfff, 0xff}, {0x1000, 0x100}} {
		if got, want := kernelDev(makedev(tc.major, tc.minor)), uint32(tc.major<<20|tc.minor); got != want {
			t.Errorf("kernelDev(%d:%d) = %#x, want %#x", tc.major, tc.minor, got, want)
		}
	}
}

func TestStatResolver(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	id, ok, err := StatResolver{}.Identify(a)
	if err != nil || !ok || id.Ino == 0 {
		t.Fatalf("Identify(%s) = %v, %v, %v", a, id, ok, err)
	}
	for _, missing := range []string{filepath.Join(dir, "b"), filepath.Join(a, "below-a-file")} {
		if _, ok, err := (StatResolver{}).Identify(missing); ok || err != nil {
			t.Errorf("Identify(%s) = %v, %v; want not found", missing, ok, err)
		}
	}
}
