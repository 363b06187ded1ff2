//go:build !linux

package engine

// runKeyOf has no key to offer here: every start reads every head.
func runKeyOf(string) (runKey, bool) { return runKey{}, false }
