//go:build !unix

package engine

import (
	"hash/fnv"
	"path/filepath"
	"runtime"
	"strings"
)

// Identify implements Resolver: see StatResolver for why a path hash.
func (StatResolver) Identify(path string) (FileID, bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return FileID{}, false, err
	}
	key := filepath.Clean(abs)
	if runtime.GOOS == "windows" {
		key = strings.ToLower(key)
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return FileID{Ino: h.Sum64()}, true, nil
}
