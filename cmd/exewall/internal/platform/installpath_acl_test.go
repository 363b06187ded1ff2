package platform

import "testing"

// TestACLWriter checks the judgment of checkInstallPath on Windows against
// the descriptors of the places a binary is installed from.
func TestACLWriter(t *testing.T) {
	const (
		system = "S-1-5-18"
		admins = "S-1-5-32-544"
		ti     = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
		users  = "S-1-5-32-545"
		authn  = "S-1-5-11"
		alice  = "S-1-5-21-1-2-3-1001"
		owner  = "S-1-3-0" // CREATOR OWNER
	)
	const full, modify, readExec = 0x1f01ff, 0x1301bf, 0x1200a9
	programFiles := []fileACE{
		{Allow: true, Mask: full, SID: ti}, {Allow: true, Mask: modify, SID: system}, {Allow: true, Mask: modify, SID: admins},
		{Allow: true, Mask: readExec, SID: users}, {Allow: true, InheritOnly: true, Mask: accessGenericAll, SID: owner},
	}
	driveRoot := []fileACE{
		{Allow: true, Mask: full, SID: system}, {Allow: true, Mask: full, SID: admins}, {Allow: true, Mask: readExec, SID: users},
		{Allow: true, Mask: fileAppendData, SID: authn}, // create folders, this folder only
		{Allow: true, InheritOnly: true, Mask: accessGenericWrite | accessDelete, SID: authn},
	}
	downloads := []fileACE{{Allow: true, Mask: full, SID: system}, {Allow: true, Mask: full, SID: admins}, {Allow: true, Mask: full, SID: alice}}
	for _, tc := range []struct {
		name  string
		owner string
		aces  []fileACE
		level int
		who   string
	}{
		{"C:\\Program Files\\exewall\\exewall.exe", admins, programFiles, 0, ""},
		{"C:\\Program Files\\exewall", admins, programFiles, 1, ""},
		{"C:\\Program Files", ti, programFiles, 2, ""},
		{"C:\\", ti, driveRoot, 3, ""},
		{"C:\\tools (created by a user under C:\\)", alice, downloads, 1, alice + " (its owner)"},
		{"C:\\Users\\alice\\Downloads\\exewall.exe", alice, downloads, 0, alice + " (its owner)"},
		{"Downloads owned by SYSTEM, alice full control", system, downloads, 1, alice},
		{"C:\\ as the executable's directory", ti, driveRoot, 1, authn},
		{"deny entries do not grant", admins, []fileACE{{Allow: false, Mask: full, SID: users}}, 0, ""},
	} {
		if got := aclWriter(tc.owner, tc.aces, tc.level); got != tc.who {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.who)
		}
	}
}
