package windows

import (
	"fmt"
	"sort"
	"strings"
)

// isWindowsAbs reports whether p is an absolute Windows path: a drive path
// (C:\x, C:/x) or a UNC or device path (\\server\share\x, \\?\C:\x). It does
// not depend on the OS the tests run on, unlike filepath.IsAbs.
func isWindowsAbs(p string) bool {
	if len(p) >= 3 && isDriveLetter(p[0]) && p[1] == ':' && (p[2] == '\\' || p[2] == '/') {
		return len(p) > 3
	}
	return len(p) > 2 && (strings.HasPrefix(p, `\\`) || strings.HasPrefix(p, "//"))
}

func isDriveLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// deriveAppID computes the WFP app ID of a drive path whose file does not
// exist (yet), the way FwpmGetAppIdFromFileName0 forms it for files that do:
// the NT device path of the volume followed by the rest of the path, all in
// lower case. devices maps drive names ("C:") to their device paths
// ("\Device\HarddiskVolume3", from QueryDosDevice). ok is false for paths
// that are not on a known drive. The backend re-resolves app IDs on every
// apply and sync, so a rule picks up the real ID once the file appears.
func deriveAppID(path string, devices map[string]string) (id string, ok bool) {
	if len(path) < 4 || !isDriveLetter(path[0]) || path[1] != ':' {
		return "", false
	}
	dev, ok := devices[strings.ToUpper(path[:2])]
	if !ok || dev == "" {
		return "", false
	}
	rest := strings.ReplaceAll(path[2:], "/", `\`)
	for strings.Contains(rest, `\\`) {
		rest = strings.ReplaceAll(rest, `\\`, `\`)
	}
	return strings.ToLower(strings.TrimRight(dev, `\`) + rest), true
}

// appIDToPath turns an app ID from a drop event back into a drive path when
// its volume is mounted on a drive letter, for the violations of the default
// (which names no executable). The ID's lower case is kept; anything else is
// returned as it is.
func appIDToPath(id string, devices map[string]string) string {
	drives := make([]string, 0, len(devices))
	for d := range devices {
		drives = append(drives, d)
	}
	sort.Strings(drives)
	lower := strings.ToLower(id)
	for _, d := range drives {
		dev := strings.ToLower(strings.TrimRight(devices[d], `\`))
		if dev != "" && strings.HasPrefix(lower, dev+`\`) {
			return d + id[len(dev):]
		}
	}
	return id
}

// userMatchSDDL is the security descriptor an FWPM_CONDITION_ALE_USER_ID
// condition matches a token against: WFP runs an access check and the
// condition matches when the descriptor grants FWP_ACTRL_MATCH_FILTER (0x1,
// "CC" in SDDL) to the token, i.e. when the token holds the SID (as its user
// or as an enabled group). Owner and group are set because an access check
// refuses a descriptor without them.
func userMatchSDDL(sid string) (string, error) {
	if !strings.HasPrefix(sid, "S-1-") || strings.ContainsAny(sid, "();: ") {
		return "", fmt.Errorf("%q is not a SID string", sid)
	}
	return "O:SYG:SYD:(A;;CC;;;" + sid + ")", nil
}
