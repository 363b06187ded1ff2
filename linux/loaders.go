//go:build linux

package linux

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
)

// loaderGlobs are where distributions keep their dynamic loaders (ld.so).
var loaderGlobs = []string{
	"/lib64/ld-*.so*", "/lib/ld-*.so*", "/lib/*/ld-*.so*", "/lib32/ld-*.so*", "/libx32/ld-*.so*",
	"/usr/lib64/ld-*.so*", "/usr/lib/ld-*.so*", "/usr/lib/*/ld-*.so*", "/usr/lib32/ld-*.so*",
}

// loaderProbes are programs whose ELF interpreter is the system's loader,
// wherever a distribution puts it.
var loaderProbes = []string{"/bin/sh", "/usr/bin/env"}

// loaderPaths are the dynamic loaders found where loaderGlobs and
// loaderProbes say. A glob whose directory is a symlink to another glob's
// (/lib -> usr/lib on merged-/usr systems) is not read again: "*/" reads
// every directory under it, and the files it would find are the same.
func loaderPaths() []string {
	seen := map[string]bool{}
	var paths []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	read := map[string]bool{}
	for _, g := range loaderGlobs {
		dir := filepath.Dir(g[:strings.IndexByte(g, '*')])
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			if read[real+g[len(dir):]] {
				continue
			}
			read[real+g[len(dir):]] = true
		}
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			if strings.Contains(filepath.Base(m), ".so") {
				add(m)
			}
		}
	}
	for _, p := range loaderProbes {
		if interp := elfInterpreter(p); interp != "" {
			add(interp)
		}
	}
	return paths
}

// writeLoaders tells the exec hook which files are dynamic loaders (paths,
// from loaderPaths): a loader run directly (ld.so PROGRAM) is judged as
// PROGRAM.
func (b *Backend) writeLoaders(paths []string) error {
	ids, err := b.resolver.identifyAll(paths)
	if err != nil {
		return fmt.Errorf("resolve dynamic loaders: %w", err)
	}
	for _, id := range ids {
		k := datapathFileId{Dev: id.Dev, Igen: id.Gen, Ino: id.Ino}
		if err := b.objs.Loaders.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write dynamic loaders: %w", err)
		}
	}
	return nil
}

// elfInterpreter is the PT_INTERP of an ELF file, "" when it has none.
func elfInterpreter(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			buf := make([]byte, p.Filesz)
			if _, err := p.ReadAt(buf, 0); err != nil {
				return ""
			}
			return strings.TrimRight(string(buf), "\x00")
		}
	}
	return ""
}
