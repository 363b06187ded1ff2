package dnsproxy

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plain, resolved := filepath.Join(dir, "plain"), filepath.Join(dir, "resolved")
	write(plain, "passwd: files\nhosts:          files dns\n")
	write(resolved, "hosts: mymachines resolve [!UNAVAIL=return] files myhostname dns # systemd\n")
	proc := filepath.Join(dir, "proc")
	write(filepath.Join(proc, "1", "comm"), "systemd\n")
	ok := func(hp HostPaths) map[string]bool {
		out := map[string]bool{}
		for _, c := range HostChecks(hp) {
			if !c.Finding {
				t.Errorf("%s is not a finding", c.Name)
			}
			out[c.Name] = c.OK
		}
		return out
	}
	absent := filepath.Join(dir, "nscd.sock")
	if got := ok(HostPaths{NSSwitch: plain, Proc: proc, NscdSock: absent}); !got["dns: nss"] || !got["dns: nscd"] || !got["dns: encrypted"] {
		t.Errorf("plain host: %v", got)
	}
	if got := ok(HostPaths{NSSwitch: resolved, Proc: proc, NscdSock: absent}); got["dns: nss"] {
		t.Errorf("resolve in nsswitch not reported: %v", got)
	}
	write(filepath.Join(proc, "77", "comm"), "nscd\n")
	if got := ok(HostPaths{NSSwitch: plain, Proc: proc, NscdSock: absent}); got["dns: nscd"] {
		t.Errorf("nscd process not reported: %v", got)
	}
}
