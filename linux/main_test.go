//go:build linux

package linux

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) == "1" {
		clientMain()
	}
	os.Exit(m.Run())
}
