package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runBoth runs the CLI and returns stdout, stderr and the error main would print.
func runBoth(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := NewWithWriters(&out, &errOut).Run(append([]string{"exewall"}, args...))
	return out.String(), errOut.String(), err
}

func TestApplyWithoutFlagUsage(t *testing.T) {
	_, _, err := runBoth("--socket", filepath.Join(t.TempDir(), "none.sock"), "apply", "policy.yaml")
	if err == nil {
		t.Fatal("apply FILE without -f succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "apply )") || !strings.Contains(msg, "exewall apply -f policy.yaml") {
		t.Errorf("apply without -f: %q, want the usage with -f and the file given", msg)
	}
}

func TestApplyHelpFlags(t *testing.T) {
	out, _, err := runBoth("apply", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "--confirm-within exewall confirm") || !strings.Contains(out, "--confirm-within D") {
		t.Errorf("apply --help shows a broken placeholder:\n%s", out)
	}
	if !strings.Contains(out, "exewall apply [command options] -f FILE") {
		t.Errorf("apply --help has no usage line with -f FILE:\n%s", out)
	}
}

func TestViolationsNoDaemonPrintsNoHeader(t *testing.T) {
	out, _, err := runBoth("--socket", filepath.Join(t.TempDir(), "none.sock"), "violations")
	if err == nil {
		t.Fatal("violations with no daemon succeeded")
	}
	if out != "" {
		t.Errorf("violations with no daemon printed %q before its error", out)
	}
}

func TestViolationsEmptyListHasHeader(t *testing.T) {
	e := newEnv(t)
	if out := e.run(t, "violations"); !strings.HasPrefix(out, "TIME") {
		t.Errorf("an empty listing printed %q, want the header", out)
	}
}

// TestRuleOnMissingExeWarns: a path that does not exist is kept (it may be
// installed later) but the user is told, there and in ls; a data file
// that nothing can execute is refused.
func TestRuleOnMissingExeWarns(t *testing.T) {
	e := newEnv(t)
	missing := filepath.Join(t.TempDir(), "crul")
	out, errOut, err := runBoth("--socket", e.socket, "deny", missing)
	if err != nil {
		t.Fatalf("deny of a path not present yet was refused: %v", err)
	}
	if !strings.Contains(errOut, missing+" does not exist (yet)") {
		t.Errorf("no warning on stderr for %s: stdout %q stderr %q", missing, out, errOut)
	}
	if ls := e.run(t, "ls"); !strings.Contains(ls, "exe "+missing+" (not present yet)") {
		t.Errorf("ls does not say the file is not present:\n%s", ls)
	}
	data := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(data, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runBoth("--socket", e.socket, "deny", data); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("deny of a data file: %v, want a refusal saying it is not executable", err)
	}
}
