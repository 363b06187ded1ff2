package engine

import (
	"errors"
	"strings"
	"testing"
)

// windowsAccounts stands in for LookupAccountName on a Windows host.
func windowsAccounts(name string) (string, uint32, error) {
	switch strings.ToLower(name) {
	case `host\alice`, "alice":
		return "S-1-5-21-1-2-3-1001", sidTypeUser, nil
	case `nt service\dnscache`:
		return "S-1-5-80-859482183-879914841-863379149-1145462774-2388618682", sidTypeWellKnownGroup, nil
	case `nt authority\network service`:
		return "S-1-5-20", sidTypeWellKnownGroup, nil
	case `builtin\users`:
		return "S-1-5-32-545", sidTypeAlias, nil
	case `host\ci`:
		return "S-1-5-21-1-2-3-1200", sidTypeGroup, nil
	}
	return "", 0, errors.New("no mapping between account names and security IDs was done")
}

// TestValidateWindowsAccounts runs user: and group: rules through Parse and
// Validate as on Windows, where accounts resolve to SIDs, not numbers.
func TestValidateWindowsAccounts(t *testing.T) {
	saved := lookupAccount
	lookupAccount = func(group bool, name string) (string, error) { return windowsAccount(group, name, windowsAccounts) }
	defer func() { lookupAccount = saved }()

	ok := "default: deny\nrules:\n" +
		"  - {name: alice, user: 'HOST\\alice', action: deny}\n" +
		"  - {name: dns, user: 'NT SERVICE\\Dnscache', action: allow}\n" +
		"  - {name: netsvc, user: 'NT AUTHORITY\\NETWORK SERVICE', action: local-only}\n" +
		"  - {name: sid, user: S-1-5-21-1-2-3-1002, action: deny}\n" +
		"  - {name: users, group: 'BUILTIN\\Users', action: local-only}\n" +
		"  - {name: ci, group: 'HOST\\ci', action: deny}\n"
	p, err := Parse([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, StatResolver{}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, tc := range []struct{ rules, want string }{
		{"  - {name: a, user: 'HOST\\alice', action: deny}\n  - {name: b, user: S-1-5-21-1-2-3-1001, action: deny}\n",
			`rules "a" and "b" select the same user (sid S-1-5-21-1-2-3-1001)`},
		{"  - {name: a, user: '1000', action: deny}\n", "Windows accounts have no numeric id"},
		{"  - {name: a, group: 'HOST\\alice', action: deny}\n", "is not a group"},
		{"  - {name: a, user: 'BUILTIN\\Users', action: deny}\n", "is not a user or service account"},
		{"  - {name: a, user: 'HOST\\nobody', action: deny}\n", `unknown user "HOST\\nobody"`},
	} {
		p, err := Parse([]byte("rules:\n" + tc.rules))
		if err != nil {
			t.Fatal(err)
		}
		err = Validate(p, StatResolver{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.rules, err, tc.want)
		}
	}
}
