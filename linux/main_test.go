//go:build linux

package linux

import (
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

// TestMain lets copies of the test binary act as clients (kerneltest.Copy).
func TestMain(m *testing.M) { kerneltest.Main(m) }
