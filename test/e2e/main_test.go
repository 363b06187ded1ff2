//go:build linux

package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

// exewall is the binary under test: one build per source tree, shared with
// every package and run that needs it (kerneltest.Exewall).
var exewall string

func TestMain(m *testing.M) {
	if os.Getenv(kerneltest.ClientEnv) == "" {
		var err error
		if exewall, err = kerneltest.Exewall(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	kerneltest.Main(m)
}
