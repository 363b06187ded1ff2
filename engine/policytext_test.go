package engine

import (
	"bytes"
	"testing"
)

// TestPolicyTextKeepsALargeTextPacked: what a large policy's text keeps is
// a fraction of it, and reads back byte for byte; a small one is kept as
// it is.
func TestPolicyTextKeepsALargeTextPacked(t *testing.T) {
	large := []byte(bigPolicyText(2000)) // (parse_items_test.go)
	for _, data := range [][]byte{large, large[:1000]} {
		var pt policyText
		pt.set(bytes.Clone(data))
		if kept := len(pt.raw) + len(pt.packed); len(data) > packAbove && kept > len(data)/4 {
			t.Errorf("%d bytes of text keep %d", len(data), kept)
		}
		got, err := pt.read()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes of text read back as %d: %v", len(data), len(got), err)
		}
		if !pt.same(data) || pt.same(data[:len(data)-1]) || pt.same(append(bytes.Clone(data[:len(data)-1]), '#')) {
			t.Errorf("same() does not tell %d bytes of text from others", len(data))
		}
	}
}
