//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// exewall is the binary under test, built once by TestMain.
var exewall string

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) != "" {
		clientMain()
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "exewall-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable and executable by the unprivileged caller of the refusal test.
	os.Chmod(dir, 0o755)
	exewall = filepath.Join(dir, "exewall")
	cmd := exec.Command("go", "build", "-o", exewall, "github.com/exewall/exewall/cmd/exewall")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build exewall:", err)
		return 1
	}
	return m.Run()
}
