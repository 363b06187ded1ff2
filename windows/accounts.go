package windows

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
)

// serviceSID is the SID of a service's virtual account, NT SERVICE\name:
// S-1-5-80 followed by the SHA-1 of the upper-cased name in UTF-16LE, as
// five little-endian sub-authorities (what `sc showsid` prints).
func serviceSID(name string) string {
	u := utf16.Encode([]rune(strings.ToUpper(name)))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	h := sha1.Sum(b)
	s := "S-1-5-80"
	for i := 0; i < 5; i++ {
		s += fmt.Sprintf("-%d", binary.LittleEndian.Uint32(h[4*i:]))
	}
	return s
}

// SID_NAME_USE values LookupAccountName reports.
const (
	sidTypeUser           = 1
	sidTypeGroup          = 2
	sidTypeAlias          = 4
	sidTypeWellKnownGroup = 5
)

// userLike reports whether a well-known SID names something a process runs
// as: LocalSystem, LocalService, NetworkService, or a service's virtual
// account (NT SERVICE\...), which LookupAccountName reports as well-known
// groups.
func userLike(sid string) bool {
	switch sid {
	case "S-1-5-18", "S-1-5-19", "S-1-5-20":
		return true
	}
	return strings.HasPrefix(sid, "S-1-5-80-")
}

// checkAccountKind refuses a user: that names a group and a group: that
// names a user. Service accounts (NT SERVICE\...) and the service
// identities count as users.
func checkAccountKind(acct, sid string, typ uint32, isGroup bool) error {
	isUser := typ == sidTypeUser || typ == sidTypeWellKnownGroup && userLike(sid)
	isGrp := !isUser && (typ == sidTypeGroup || typ == sidTypeAlias || typ == sidTypeWellKnownGroup)
	switch {
	case isGroup && !isGrp:
		return fmt.Errorf("group: %q is not a group (a user account?); use a user: rule", acct)
	case !isGroup && !isUser:
		return fmt.Errorf("user: %q is not a user or service account (a group?); use a group: rule", acct)
	}
	return nil
}
