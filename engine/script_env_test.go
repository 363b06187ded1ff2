package engine

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEnvScriptNamesTheInterpreterRun: for "#!/usr/bin/env node" the refusal
// names the node that PATH finds, the binary to write the rule for, not
// "/usr/bin/env node".
func TestEnvScriptNamesTheInterpreterRun(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no #! scripts on windows")
	}
	dir := t.TempDir()
	node := filepath.Join(dir, "fakenode")
	writeFile(t, node, "\x7fELF not really")
	script := filepath.Join(dir, "app.js")
	writeFile(t, script, "#!/usr/bin/env -S fakenode --max-old-space-size=64\nconsole.log(1)\n")
	t.Setenv("PATH", dir)
	err := checkRunnable(script)
	if err == nil || !strings.Contains(err.Error(), "is a script run by "+node+" (via /usr/bin/env -S fakenode") {
		t.Fatalf("refusal does not name the interpreter PATH finds (%s): %v", node, err)
	}
}

// TestRefuseNonExecutable: a rule on a data file is a typo (no process can
// run it); a path that does not exist yet is still accepted.
func TestRefuseNonExecutable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no execute bit on windows")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(data, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkRunnable(data); err == nil || !strings.Contains(err.Error(), "is not executable") {
		t.Fatalf("a non-executable file was accepted: %v", err)
	}
	if err := checkRunnable(filepath.Join(dir, "crul")); err != nil {
		t.Fatalf("a path that does not exist yet was refused: %v", err)
	}
}
