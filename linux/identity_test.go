//go:build linux

package linux

import (
	"bytes"
	"encoding/binary"
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
