package windows

import "testing"

func TestServiceSID(t *testing.T) {
	// Values `sc showsid` prints on Windows.
	for name, want := range map[string]string{
		"TrustedInstaller": "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
		"Dnscache":         "S-1-5-80-859482183-879914841-863379149-1145462774-2388618682",
	} {
		if got := serviceSID(name); got != want {
			t.Errorf("ServiceSID(%q) = %s, want %s", name, got, want)
		}
	}
}

func TestCheckAccountKind(t *testing.T) {
	for _, tc := range []struct {
		acct, sid string
		typ       uint32
		group, ok bool
	}{
		{`HOST\alice`, "S-1-5-21-1-2-3-1001", sidTypeUser, false, true},
		{`HOST\alice`, "S-1-5-21-1-2-3-1001", sidTypeUser, true, false},
		{`NT SERVICE\Dnscache`, serviceSID("Dnscache"), sidTypeWellKnownGroup, false, true},
		{`NT AUTHORITY\SYSTEM`, "S-1-5-18", sidTypeWellKnownGroup, false, true},
		{`NT AUTHORITY\NETWORK SERVICE`, "S-1-5-20", sidTypeWellKnownGroup, true, false},
		{`BUILTIN\Users`, "S-1-5-32-545", sidTypeAlias, true, true},
		{`BUILTIN\Users`, "S-1-5-32-545", sidTypeAlias, false, false},
		{`Everyone`, "S-1-1-0", sidTypeWellKnownGroup, true, true},
		{`DOMAIN\ci`, "S-1-5-21-9-9-9-1200", sidTypeGroup, true, true},
	} {
		err := checkAccountKind(tc.acct, tc.sid, tc.typ, tc.group)
		if (err == nil) != tc.ok {
			t.Errorf("%s group=%v: %v", tc.acct, tc.group, err)
		}
	}
}
