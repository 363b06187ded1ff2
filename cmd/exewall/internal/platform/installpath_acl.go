package platform

import "fmt"

// What a Windows file or directory's security descriptor says, for
// checkInstallPath on Windows. This file has no build tag so its test runs
// everywhere.

type fileACE struct {
	Allow       bool
	InheritOnly bool // applies to children only, not to the object itself
	Mask        uint32
	SID         string
}

// Access rights that let their holder replace a file or what a directory
// leads to.
const (
	fileWriteData      = 0x2 // FILE_WRITE_DATA; on a directory FILE_ADD_FILE
	fileAppendData     = 0x4 // FILE_APPEND_DATA; on a directory FILE_ADD_SUBDIRECTORY
	fileDeleteChild    = 0x40
	accessDelete       = 0x10000
	accessWriteDAC     = 0x40000
	accessWriteOwner   = 0x80000
	accessGenericAll   = 0x10000000
	accessGenericWrite = 0x40000000
	accessMaximum      = 0x02000000 // MAXIMUM_ALLOWED
)

// trustedSIDs may write anywhere on a service's path: LocalSystem,
// Administrators and TrustedInstaller (which owns C:\Windows and C:\Program
// Files).
var trustedSIDs = map[string]bool{
	"S-1-5-18":     true,
	"S-1-5-32-544": true,
	"S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464": true,
}

// aclWriter names the first account that could replace the executable
// through this object, "" when none: an owner outside trustedSIDs (an owner
// can always rewrite the DACL), or an allow entry granting someone else a
// right that matters. For the executable itself that is writing or
// deleting it; for its own directory, adding files too (a DLL planted
// beside it is loaded first); for directories further up, deleting or
// renaming what they hold (adding a new entry there changes nothing: C:\
// lets Authenticated Users create folders).
func aclWriter(owner string, aces []fileACE, level int) string {
	if !trustedSIDs[owner] {
		return fmt.Sprintf("%s (its owner)", owner)
	}
	bad := uint32(accessDelete | accessWriteDAC | accessWriteOwner | accessGenericAll | accessMaximum)
	switch level {
	case 0: // the executable
		bad |= fileWriteData | fileAppendData | accessGenericWrite
	case 1: // its directory
		bad |= fileWriteData | fileAppendData | fileDeleteChild | accessGenericWrite
	default:
		bad |= fileDeleteChild
	}
	for _, a := range aces {
		if a.Allow && !a.InheritOnly && a.Mask&bad != 0 && !trustedSIDs[a.SID] {
			return a.SID
		}
	}
	return ""
}
