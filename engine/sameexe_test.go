package engine

import (
	"path"
	"testing"
)

// TestSameExe: the fast comparison of clean paths agrees with comparing
// path.Clean of both, for clean and unclean paths alike.
func TestSameExe(t *testing.T) {
	paths := []string{"/", "/usr/bin/curl", "/usr/bin/curl/", "/usr//bin/curl", "/usr/./bin/curl", "/usr/bin/../bin/curl",
		"/usr/bin/.", "/usr/bin/..", "/usr/bin/.curl", "/usr/bin/..curl", "/usr/bin/curl.", "//usr/bin/curl", "/.", "/..", "/usr/bin"}
	for _, a := range paths {
		if cleanAbs(a) != (path.Clean(a) == a) {
			t.Errorf("cleanAbs(%q) = %v, path.Clean gives %q", a, cleanAbs(a), path.Clean(a))
		}
		for _, b := range paths {
			if got, want := SameExe(a, b), path.Clean(a) == path.Clean(b); got != want {
				t.Errorf("SameExe(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
	if !SameExe(`C:\Windows\notepad.exe`, "c:/windows/NOTEPAD.EXE") {
		t.Error("Windows paths: case and slashes should not matter")
	}
}
