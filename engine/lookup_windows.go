package engine

import "syscall"

// osLookupAccount resolves a selector to a SID: os/user would return SIDs
// where LookupUID wants numbers, and refuses service accounts.
func osLookupAccount(group bool, name string) (string, error) {
	return windowsAccount(group, name, func(n string) (string, uint32, error) {
		sid, _, typ, err := syscall.LookupSID("", n)
		if err != nil {
			return "", 0, err
		}
		s, err := sid.String()
		return s, typ, err
	})
}
