//go:build linux

package platform

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecondResetSaysNothingToRemove: a reset with nothing left to remove
// must not claim it removed something.
func TestSecondResetSaysNothingToRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (the pin lock lives under /run)")
		}
		t.Skip("needs root (the pin lock lives under /run)")
	}
	dir := filepath.Join(t.TempDir(), "pins")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a_map"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := Reset(context.Background(), Config{PinDir: dir})
	if err != nil || !strings.HasPrefix(first, "removed") {
		t.Fatalf("first reset: %q, %v", first, err)
	}
	second, err := Reset(context.Background(), Config{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(second, "removed") || !strings.Contains(second, "nothing to remove") {
		t.Errorf("second reset says %q", second)
	}
}
