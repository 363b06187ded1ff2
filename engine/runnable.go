package engine

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"sync"
)

// runnableSeen remembers the executables found runnable (checkRunnable: a
// regular, executable file that is no script), by what stat says of them,
// across daemon starts: a start then reads the head of only the files that
// changed since. At 100,000 rules, reading every head was most of a start
// whose files were not in the page cache (9 of 13.7 s here); a stat is
// metadata only.
//
// A file is taken for what the cache says while its device, inode, size,
// mode and ctime are those recorded: writing a file, chmod, or putting
// another file in its place all change them. The cache is a convenience,
// not a protection: a stale entry could at worst let a rule name a script
// (whose processes it then does not match), the mistake checkRunnable
// exists to point out.
type runnableSeen struct {
	known map[runKey]bool // from the file
	mu    sync.Mutex
	ok    []runKey // found runnable by this validation, cached or read
}

// runKey is what stat says of a file that changes when it is rewritten,
// replaced or made (not) executable.
type runKey struct {
	dev, ino, size, mode, ctimeSec, ctimeNsec uint64
}

const runKeySize = 6 * 8

var runnableMagic = []byte("exewall runnable 1\n")

// loadRunnable reads the cache at path; a missing or unreadable file is an
// empty cache.
func loadRunnable(path string) *runnableSeen {
	s := &runnableSeen{known: map[runKey]bool{}}
	data, err := os.ReadFile(path)
	if err != nil || len(data) < len(runnableMagic) || string(data[:len(runnableMagic)]) != string(runnableMagic) {
		return s
	}
	data = data[len(runnableMagic):]
	if len(data)%runKeySize != 0 {
		return s
	}
	s.known = make(map[runKey]bool, len(data)/runKeySize)
	for ; len(data) > 0; data = data[runKeySize:] {
		var k runKey
		for i, f := range []*uint64{&k.dev, &k.ino, &k.size, &k.mode, &k.ctimeSec, &k.ctimeNsec} {
			*f = binary.LittleEndian.Uint64(data[i*8:])
		}
		s.known[k] = true
	}
	return s
}

// check is checkRunnable(exe), answered from the cache when exe is as it
// was.
func (s *runnableSeen) check(exe string) error {
	if s == nil {
		return checkRunnable(exe)
	}
	key, ok := runKeyOf(exe)
	if ok && s.known[key] {
		s.add(key)
		return nil
	}
	var err error
	if ok { // (a stat fewer: 100,000 of them at a first start on 100,000 rules)
		err = checkRunnableMode(exe, key.fileMode())
	} else {
		err = checkRunnable(exe)
	}
	if err == nil && ok {
		s.add(key)
	}
	return err
}

func (s *runnableSeen) add(k runKey) {
	s.mu.Lock()
	s.ok = append(s.ok, k)
	s.mu.Unlock()
}

// save writes what this validation found runnable to path, in place of
// what was there.
func (s *runnableSeen) save(path string) error {
	data := make([]byte, 0, len(runnableMagic)+len(s.ok)*runKeySize)
	data = append(data, runnableMagic...)
	for _, k := range s.ok {
		for _, f := range []uint64{k.dev, k.ino, k.size, k.mode, k.ctimeSec, k.ctimeNsec} {
			data = binary.LittleEndian.AppendUint64(data, f)
		}
	}
	err := WriteFileAtomic(path, data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no state directory: nothing remembered
	}
	return err
}
