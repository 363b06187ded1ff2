//go:build linux

package linux

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/exewall/exewall/engine"
)

// TestDecodeFdID: the iterator's records are read field by field as the
// generated struct lays them out.
func TestDecodeFdID(t *testing.T) {
	var rec fileidFdId
	if got := binary.Size(rec); got != fdIDSize {
		t.Fatalf("fd_id is %d bytes, decodeFdID reads %d", got, fdIDSize)
	}
	rec.Fd, rec.Pad = 7, 0xffffffff
	rec.Id.Dev, rec.Id.Igen, rec.Id.Ino = 0x800003, 0xdeadbeef, 1<<40+5
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &rec); err != nil {
		t.Fatal(err)
	}
	fd, id := decodeFdID(buf.Bytes())
	if want := (engine.FileID{Dev: 0x800003, Gen: 0xdeadbeef, Ino: 1<<40 + 5}); fd != 7 || id != want {
		t.Fatalf("decoded fd %d id %v, want 7 %v", fd, id, want)
	}
}

func TestNotRemembered(t *testing.T) {
	todo := []string{"/a", "/b", "/a", "/c", "/d"}
	rem := []bool{false, true, true, false, true}
	for _, c := range []struct{ sub, want []string }{
		{[]string{"/a", "/b", "/a", "/c", "/d"}, []string{"/a", "/c"}},
		{[]string{"/b", "/c"}, []string{"/c"}},
		{[]string{"/a", "/a"}, []string{"/a"}},
		{nil, []string{}},
		{[]string{"/c", "/x", "/d"}, []string{"/c", "/x", "/d"}}, // not a subsequence from /x on: kept
	} {
		if got := notRemembered(c.sub, todo, rem); !slices.Equal(got, c.want) {
			t.Errorf("notRemembered(%q) = %q, want %q", c.sub, got, c.want)
		}
	}
}
