package engine

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
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

// checkAll is checkRunnable for each of exes, by position, answered from
// the cache for a file that is as it was. The stats come first,
// from several goroutines (a stat can wait on the disk); then the heads of
// the files the cache does not know are read together (eachHead), which
// lets the kernel merge the disk reads of files stored side by side.
func (s *runnableSeen) checkAll(exes []string) []error {
	errs := make([]error, len(exes))
	keys := make([]runKey, len(exes))
	unknown := make([]bool, len(exes))
	eachUpToReaders(len(exes), func(k int) {
		exe := exes[k]
		key, ok := runKeyOf(exe)
		switch {
		case !ok:
			errs[k] = checkRunnable(exe) // vanished, or why stat failed
		case s != nil && s.known[key]:
			s.add(key)
		default:
			errs[k] = checkRunnableMode(exe, key.fileMode())
			keys[k], unknown[k] = key, errs[k] == nil
		}
	})
	var todo []int
	var files []string
	for k, u := range unknown {
		if u {
			todo = append(todo, k)
			files = append(files, exes[k])
		}
	}
	eachHead(files, func(j int, head []byte, err error) {
		k := todo[j]
		if errs[k] = checkScript(exes[k], head, err); errs[k] == nil && s != nil {
			s.add(keys[k])
		}
	})
	return errs
}

// eachUpToReaders calls f(k) for k in [0, n), up to readersAtOnce at a
// time: f stats or reads a file, which may wait on the disk.
func eachUpToReaders(n int, f func(k int)) {
	if n == 1 {
		f(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n/64+1, readersAtOnce) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				f(k)
			}
		}()
	}
	wg.Wait()
}

// readersAtOnce is how many files are read, or stat'ed, at a time without
// a ring, whatever the CPUs: a file not in the page cache waits on the
// disk. A daemon starting on 100,000 executables whose pages had gone cold
// (this VM pages out what was not touched for a minute) took 5.9-6.8 s to
// READY reading 2 at a time, 3.4-4.1 s reading 16; warm, the same either
// way.
const readersAtOnce = 16

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
