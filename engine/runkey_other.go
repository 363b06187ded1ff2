//go:build !linux

package engine

import "io/fs"

// runKeyOf has no key to offer here: every start reads every head.
func runKeyOf(string) (runKey, bool) { return runKey{}, false }

func (runKey) fileMode() fs.FileMode { return 0 }
