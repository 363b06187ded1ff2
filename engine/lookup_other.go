//go:build !windows

package engine

import "fmt"

// osLookupAccount resolves a selector to a uid or gid.
func osLookupAccount(group bool, name string) (string, error) {
	if group {
		gid, err := LookupGID(name)
		return fmt.Sprintf("gid %d", gid), err
	}
	uid, err := LookupUID(name)
	return fmt.Sprintf("uid %d", uid), err
}
