package dnsproxy

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"

	"github.com/exewall/exewall/engine"
)

// HostPaths are the files HostChecks reads; zero fields are the host's.
type HostPaths struct {
	NSSwitch string // /etc/nsswitch.conf
	Proc     string // /proc
	NscdSock string // /run/nscd/socket
}

// HostChecks are `exewall doctor`'s lines on name entries: whether the host
// resolves names through a process exewall cannot attribute (the lookups
// of a rule's program are then not seen, so its name entries allow
// nothing), and what encrypted DNS does. They are findings about the
// machine, never failures of exewall.
func HostChecks(hp HostPaths) []engine.Check {
	if hp.NSSwitch == "" {
		hp.NSSwitch = "/etc/nsswitch.conf"
	}
	if hp.Proc == "" {
		hp.Proc = "/proc"
	}
	if hp.NscdSock == "" {
		hp.NscdSock = "/run/nscd/socket"
	}
	var out []engine.Check
	c := engine.Check{Name: "dns: nss", Finding: true, OK: true,
		Detail: "the hosts line of " + hp.NSSwitch + " resolves in the program's own process (over port 53): name entries see its lookups"}
	if mods := hostsModules(hp.NSSwitch); containsFold(mods, "resolve") {
		c.OK = false
		c.Detail = "the hosts line of " + hp.NSSwitch + " uses `resolve`: glibc asks systemd-resolved over its socket, not over port 53, " +
			"so exewall does not see the lookups and name entries allow nothing for programs using it; " +
			"remove `resolve` from the hosts line (`dns` then asks the 127.0.0.53 stub over port 53, which exewall sees)"
	}
	out = append(out, c)
	c = engine.Check{Name: "dns: nscd", Finding: true, OK: true, Detail: "no nscd running: lookups are made by the programs themselves"}
	if nscdRunning(hp) {
		c.OK = false
		c.Detail = "nscd is running: glibc asks it for host names, and nscd looks them up in its own process, so exewall does not " +
			"see them and name entries allow nothing for those programs; disable its hosts cache (`enable-cache hosts no` in /etc/nscd.conf) or stop nscd"
	}
	out = append(out, c)
	out = append(out, engine.Check{Name: "dns: encrypted", Finding: true, OK: true,
		Detail: "rules with name entries deny DNS over TLS/QUIC (port 853) and the well-known DNS-over-HTTPS resolvers by default; " +
			"a program using another DoH server resolves names exewall does not see, and its connections are judged by address only"})
	return out
}

// hostsModules returns the sources of nsswitch.conf's hosts line.
func hostsModules(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line, _, _ := strings.Cut(s.Text(), "#")
		db, srcs, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(db) != "hosts" {
			continue
		}
		var mods []string
		for _, f := range strings.Fields(srcs) {
			if !strings.HasPrefix(f, "[") {
				mods = append(mods, f)
			}
		}
		return mods
	}
	return nil
}

// nscdRunning reports whether nscd answers: its socket exists or a process
// is named nscd.
func nscdRunning(hp HostPaths) bool {
	if _, err := os.Stat(hp.NscdSock); err == nil {
		return true
	}
	comms, _ := filepath.Glob(filepath.Join(hp.Proc, "[0-9]*", "comm"))
	for _, p := range comms {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "nscd" {
			return true
		}
	}
	return false
}

func containsFold(ss []string, s string) bool {
	for _, x := range ss {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
