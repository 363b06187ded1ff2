//go:build windows

package platform

import (
	"fmt"
	"path/filepath"
	"unsafe"

	xwindows "golang.org/x/sys/windows"
)

// checkInstallPath refuses a service executable that anyone but SYSTEM,
// Administrators or TrustedInstaller could replace: the service runs it as
// LocalSystem at every boot, so a binary in a user-writable folder
// (Downloads) would hand SYSTEM to that user. The file and each directory
// up to the drive's root are judged by aclWriter.
func checkInstallPath(exe string) error {
	exe, err := filepath.Abs(exe)
	if err != nil {
		return fmt.Errorf("check service executable: %w", err)
	}
	for p, level := exe, 0; ; p, level = filepath.Dir(p), level+1 {
		sd, err := xwindows.GetNamedSecurityInfo(p, xwindows.SE_FILE_OBJECT, xwindows.OWNER_SECURITY_INFORMATION|xwindows.DACL_SECURITY_INFORMATION)
		if err != nil {
			return fmt.Errorf("check service executable: read the security of %s: %w", p, err)
		}
		owner, _, err := sd.Owner()
		if err != nil {
			return fmt.Errorf("check service executable: owner of %s: %w", p, err)
		}
		aces, err := readACEs(sd)
		if err != nil {
			return fmt.Errorf("check service executable: %s: %w", p, err)
		}
		if who := aclWriter(owner.String(), aces, level); who != "" {
			return fmt.Errorf("refusing to install %s as a service: %s is writable by %s, who could replace what runs as SYSTEM; "+
				`copy it to a folder only administrators can change (C:\Program Files\exewall\) and install from there`, exe, p, accountName(who))
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func readACEs(sd *xwindows.SECURITY_DESCRIPTOR) ([]fileACE, error) {
	dacl, _, err := sd.DACL()
	if err != nil {
		return nil, fmt.Errorf("read dacl: %w", err)
	}
	if dacl == nil {
		// A NULL DACL grants everyone everything.
		return []fileACE{{Allow: true, Mask: accessGenericAll, SID: "S-1-1-0"}}, nil
	}
	var out []fileACE
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *xwindows.ACCESS_ALLOWED_ACE
		if err := xwindows.GetAce(dacl, i, &ace); err != nil {
			return nil, fmt.Errorf("read ace %d: %w", i, err)
		}
		if ace.Header.AceType != xwindows.ACCESS_ALLOWED_ACE_TYPE && ace.Header.AceType != xwindows.ACCESS_DENIED_ACE_TYPE {
			continue // object and callback entries: exewall's folders have none
		}
		sid := (*xwindows.SID)(unsafe.Pointer(&ace.SidStart))
		out = append(out, fileACE{
			Allow:       ace.Header.AceType == xwindows.ACCESS_ALLOWED_ACE_TYPE,
			InheritOnly: ace.Header.AceFlags&xwindows.INHERIT_ONLY_ACE != 0,
			Mask:        uint32(ace.Mask),
			SID:         sid.String(),
		})
	}
	return out, nil
}

// accountName adds the account's name to a SID for the message.
func accountName(who string) string {
	sid, err := xwindows.StringToSid(who)
	if err != nil {
		return who
	}
	acct, dom, _, err := sid.LookupAccount("")
	if err != nil {
		return who
	}
	return fmt.Sprintf(`%s\%s (%s)`, dom, acct, who)
}
