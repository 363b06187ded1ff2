package windows

import (
	"strings"
	"testing"
)

func TestIsWindowsAbs(t *testing.T) {
	for p, want := range map[string]bool{
		`C:\Windows\System32\curl.exe`: true,
		`c:/tools/x.exe`:               true,
		`\\server\share\x.exe`:         true,
		`\\?\C:\x.exe`:                 true,
		`C:\`:                          false, // a drive root names no file
		`C:`:                           false,
		`C:x.exe`:                      false,
		`/usr/bin/curl`:                false,
		`curl.exe`:                     false,
		`\x.exe`:                       false,
		``:                             false,
	} {
		if got := isWindowsAbs(p); got != want {
			t.Errorf("isWindowsAbs(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestDeriveAppID(t *testing.T) {
	devices := map[string]string{"C:": `\Device\HarddiskVolume3`, "D:": `\Device\HarddiskVolume5\`}
	for _, tc := range []struct{ in, want string }{
		{`C:\Program Files\App\App.exe`, `\device\harddiskvolume3\program files\app\app.exe`},
		{`c:/tools//x.EXE`, `\device\harddiskvolume3\tools\x.exe`},
		{`D:\x.exe`, `\device\harddiskvolume5\x.exe`},
		{`E:\x.exe`, ``},
		{`\\server\share\x.exe`, ``},
	} {
		got, ok := deriveAppID(tc.in, devices)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("deriveAppID(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
		if ok {
			if back := appIDToPath(got, devices); !strings.EqualFold(back, strings.ReplaceAll(strings.ReplaceAll(tc.in, "//", "/"), "/", `\`)) {
				t.Errorf("appIDToPath(%q) = %q, want %q in some case", got, back, tc.in)
			}
		}
	}
	if got := appIDToPath(`\device\mup\server\share\x.exe`, devices); got != `\device\mup\server\share\x.exe` {
		t.Errorf("unmapped app ID changed: %q", got)
	}
	// A volume whose name is a prefix of another's must not capture it.
	if got := appIDToPath(`\device\harddiskvolume31\x.exe`, devices); got != `\device\harddiskvolume31\x.exe` {
		t.Errorf("volume 31 mapped through volume 3: %q", got)
	}
}

func TestUserMatchSDDL(t *testing.T) {
	got, err := userMatchSDDL("S-1-5-21-1-2-3-1001")
	if err != nil || got != "O:SYG:SYD:(A;;CC;;;S-1-5-21-1-2-3-1001)" {
		t.Errorf("got %q, %v", got, err)
	}
	for _, bad := range []string{"", "alice", "S-1-5)(A;;CC;;;WD", "BA"} {
		if _, err := userMatchSDDL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
