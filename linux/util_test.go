//go:build linux

package linux

import (
	"encoding/binary"
	"strings"
)

func binaryEventSize() int { return binary.Size(datapathEvent{}) }

func splitLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
