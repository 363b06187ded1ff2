package engine

import (
	"fmt"
	"strconv"
	"strings"
)

// lookupAccount resolves a user: (group false) or group: selector to the
// identity two rules may not share: "uid 501", "gid 20", or on Windows
// "sid S-1-5-...". Each OS supplies osLookupAccount; tests replace it.
var lookupAccount = osLookupAccount

// SID_NAME_USE values of LookupAccountName.
const (
	sidTypeUser           = 1
	sidTypeGroup          = 2
	sidTypeAlias          = 4
	sidTypeWellKnownGroup = 5
)

// windowsAccount resolves a Windows account name (HOST\alice, BUILTIN\Users,
// NT SERVICE\Dnscache) or SID string with lookup (LookupAccountName). Windows
// accounts have no numeric id: a number is refused. A user: must name a user
// or a service identity (LocalSystem, LocalService, NetworkService, NT
// SERVICE\..., which Windows reports as well-known groups), a group: a group.
func windowsAccount(group bool, name string, lookup func(string) (sid string, typ uint32, err error)) (string, error) {
	kind := "user"
	if group {
		kind = "group"
	}
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		return "", fmt.Errorf("%s %q is a number; Windows accounts have no numeric id: name the account or give its SID (S-1-5-...)", kind, name)
	}
	if strings.HasPrefix(name, "S-1-") {
		return "sid " + name, nil
	}
	sid, typ, err := lookup(name)
	if err != nil {
		return "", fmt.Errorf("unknown %s %q", kind, name)
	}
	serviceLike := sid == "S-1-5-18" || sid == "S-1-5-19" || sid == "S-1-5-20" || strings.HasPrefix(sid, "S-1-5-80-")
	isUser := typ == sidTypeUser || typ == sidTypeWellKnownGroup && serviceLike
	isGroup := !isUser && (typ == sidTypeGroup || typ == sidTypeAlias || typ == sidTypeWellKnownGroup)
	switch {
	case group && !isGroup:
		return "", fmt.Errorf("group %q is not a group (%s); use a user: rule", name, sid)
	case !group && !isUser:
		return "", fmt.Errorf("user %q is not a user or service account (%s); use a group: rule", name, sid)
	}
	return "sid " + sid, nil
}
