//go:build linux

package linux

import (
	"bytes"
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

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

// TestIdentityIteratorOwnFiles: the identity iterator is linked to this
// process's files (a pass then walks no other process's), and identities
// it reports are the kernel's as before.
func TestIdentityIteratorOwnFiles(t *testing.T) {
	requireKernel(t)
	r := newResolver(nil, nil)
	defer r.Close()
	if r.fallback != nil {
		t.Skipf("no iterator: %v", r.fallback)
	}
	it, err := attachOwnIter(r.prog)
	if err != nil {
		t.Fatalf("attach the iterator to this process: %v", err)
	}
	it.Close()
	exe := clientCopy(t, t.TempDir(), "ownfiles")
	got, err := r.identifyAll([]string{exe})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(exe, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	want, err := statID(fd, exe)
	if err != nil {
		t.Fatal(err)
	}
	if g := got[exe]; g.Ino != want.Ino || g.Dev != want.Dev {
		t.Errorf("identity %+v, stat says %+v", g, want)
	}
}

// TestIdentifyFirstIsLstatThenIdentify: the first resolution's one open per
// path gives the stat keys, symlinks and identities that lstat and then
// identifyUncached give, for a file, a symlink to one, a dangling symlink,
// a missing path, a path through a symlinked directory and a directory.
func TestIdentifyFirstIsLstatThenIdentify(t *testing.T) {
	requireKernel(t)
	b := newTestBackend(t, scratchCgroup(t))
	dir := t.TempDir()
	file := clientCopy(t, dir, "file")
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	inReal := clientCopy(t, filepath.Join(dir, "real"), "inner")
	os.Symlink(file, filepath.Join(dir, "link"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "dirlink"))
	paths := []string{file, inReal, filepath.Join(dir, "link"), filepath.Join(dir, "dangling"),
		filepath.Join(dir, "missing"), filepath.Join(dir, "dirlink", "inner"), filepath.Join(dir, "real")}
	ans := make([]pathAnswer, len(paths))
	if err := b.resolver.identifyFirst(paths, ans); err != nil {
		t.Fatal(err)
	}
	keys, links, ids := map[string]statKey{}, map[string]bool{}, map[string]engine.FileID{}
	for i, p := range paths {
		if ans[i].hasKey {
			keys[p] = ans[i].key
		}
		if ans[i].link {
			links[p] = true
		}
		if ans[i].hasID {
			ids[p] = ans[i].id
		}
	}
	wantKeys, wantLinks := lstatKeys(paths)
	wantIDs, _, _, err := b.resolver.identifyUncached(paths, wantKeys)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(keys, wantKeys) || !maps.Equal(links, wantLinks) || !maps.Equal(ids, wantIDs) {
		t.Errorf("first resolution:\n keys %v\n links %v\n ids %v\nlstat, then identify:\n keys %v\n links %v\n ids %v", keys, links, ids, wantKeys, wantLinks, wantIDs)
	}
	if len(ids) != 5 || !links[filepath.Join(dir, "link")] || ids[filepath.Join(dir, "link")] != ids[file] {
		t.Errorf("ids %v links %v: want 5 identities, the link's its target's", ids, links)
	}
}

// TestJoinAsIsJoin: joinAs answers filepath.Join(dir, Base(p)), returning
// p itself only where that is the same string.
func TestJoinAsIsJoin(t *testing.T) {
	for _, c := range []struct{ dir, p string }{
		{"/usr/bin", "/usr/bin/curl"}, {"/real/bin", "/usr/bin/curl"}, {"/", "/curl"},
		{"/a", "/a/.."}, {"/a", "/a/."}, {"/a/", "/a//x"}, {"/a", "/a//x"}, {"/", "//x"},
		{"/a/b", "/a/b/c/"}, {"/ab", "/a/bc"},
	} {
		if got, want := joinAs(c.dir, c.p), filepath.Join(c.dir, filepath.Base(c.p)); got != want {
			t.Errorf("joinAs(%q, %q) = %q, want %q", c.dir, c.p, got, want)
		}
	}
}
