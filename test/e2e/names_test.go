//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exewall/exewall/test/kerneltest"
)

// TestNamesRealPrograms: real Debian programs nobody here wrote (curl,
// wget, nc, dig, getent), ruled by name entries added with `exewall rule add`,
// resolve through a test resolv.conf (glibc getaddrinfo; dig its own
// resolver) to the DNS server in the test's namespace and reach the servers
// there: the allowed name works (A, AAAA, a CNAME, DNS over TCP), a name the rule does not have is the
// tool's failure with a violation carrying daddr and dport, and a name a
// deny entry names is refused with a violation carrying `name`.
func TestNamesRealPrograms(t *testing.T) {
	progs := map[string]string{}
	for _, p := range []string{"curl", "wget", "nc", "dig", "getent"} {
		lookPath(t, p)
		real, err := filepath.EvalSymlinks("/usr/bin/" + p)
		if err != nil {
			t.Fatal(err)
		}
		progs[p] = real
	}
	n := newNamesNet(t)
	web, other, echo, bad, six := n.net.Addr4(10), n.net.Addr4(11), n.net.Addr4(12), n.net.Addr4(13), n.net.Addr6(14)
	n.zone.Set("web.names.test", web)
	n.zone.Set("other.names.test", other)
	n.zone.Set("echo.names.test", echo)
	n.zone.Set("bad.names.test", bad)
	n.zone.CNAME("www.names.test", "web.names.test")
	n.zone.Set("six.names.test", six)
	w := newWorld(t)
	w.start()
	w.ok("apply", "-f", n.policy(t))
	w.ok("rule", "add", "--name", "curl", "--action", "deny", "--allow", "web.names.test port 80 tcp", "--allow", "www.names.test port 80 tcp",
		"--allow", "six.names.test port 80 tcp", "--exe", progs["curl"])
	w.ok("rule", "add", "--name", "nc", "--action", "deny", "--allow", "*.names.test port 7000 tcp", "--exe", progs["nc"])
	w.ok("rule", "add", "--name", "wget", "--action", "allow", "--deny", "bad.names.test", "--exe", progs["wget"])
	w.ok("rule", "add", "--name", "dig", "--action", "deny", "--allow", "web.names.test port 80 tcp", "--exe", progs["dig"])
	w.ok("rule", "add", "--name", "getent", "--action", "deny", "--allow", "*.names.test", "--exe", progs["getent"])

	curl := func(name string) (string, error) {
		return n.run(t, w.cgroup, false, "curl", "-sS", "--max-time", "5", "http://"+name+"/")
	}
	if out, err := curl("web.names.test"); err != nil || !strings.Contains(out, "hello from web.names.test") {
		t.Errorf("curl web.names.test (allowed): %v: %s", err, out)
	}
	if out, err := curl("www.names.test"); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("curl www.names.test (a CNAME, allowed): %v: %s", err, out)
	}
	if out, err := curl("six.names.test"); err != nil || !strings.Contains(out, "hello from six.names.test") {
		t.Errorf("curl six.names.test (AAAA, allowed): %v: %s", err, out)
	}
	since := time.Now()
	if out, err := curl("other.names.test"); err == nil || !strings.Contains(out, "(7)") {
		t.Errorf("curl other.names.test (not in the rule): %v: %s, want curl's `couldn't connect` (7)", err, out)
	}
	v := w.violationTo(since, other, 80)
	if v["rule"] != "curl" || v["proto"] != "tcp" || v["exe"] != progs["curl"] {
		t.Errorf("violation of curl to other.names.test: %v", v)
	}
	if _, ok := v["name"]; ok {
		t.Errorf("violation carries a name though no name entry was involved: %v", v)
	}

	if out, err := n.run(t, w.cgroup, false, "wget", "-q", "-O", "-", "-T", "5", "-t", "1", "http://web.names.test/"); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("wget web.names.test (allowed): %v: %s", err, out)
	}
	since = time.Now()
	if out, err := n.run(t, w.cgroup, false, "wget", "-O", "-", "-T", "5", "-t", "1", "http://bad.names.test/"); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("wget bad.names.test (a deny entry): %v: %s, want EPERM", err, out)
	}
	if v := w.violationTo(since, bad, 80); v["name"] != "bad.names.test" || v["rule"] != "wget" {
		t.Errorf("violation of wget to bad.names.test: %v, want name bad.names.test", v)
	}

	port := fmt.Sprint(namesEchoPort)
	if out, err := n.run(t, w.cgroup, false, "nc", "-z", "-w", "3", "echo.names.test", port); err != nil {
		t.Errorf("nc echo.names.test %s (allowed by a wildcard): %v: %s", port, err, out)
	}
	since = time.Now()
	if out, err := n.run(t, w.cgroup, false, "nc", "-zv", "-w", "3", "echo.names.test", "80"); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("nc echo.names.test 80 (port not in the rule): %v: %s, want EPERM", err, out)
	}
	w.violationTo(since, echo, 80)
	// web.names.test matches nc's wildcard, but only curl looked it up.
	if out, err := n.run(t, w.cgroup, false, "nc", "-zv", "-w", "3", web.String(), port); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("nc to the address curl's rule looked up: %v: %s, want EPERM", err, out)
	}
	if out, err := n.run(t, w.cgroup, false, "nc", "-z", "-w", "3", "names.test", port); err == nil {
		t.Errorf("nc names.test (the wildcard's apex, no such name) worked: %s", out)
	}

	out, err := n.run(t, w.cgroup, false, "dig", "+short", "+tries=1", "+time=3", "web.names.test", "A")
	if err != nil || strings.TrimSpace(out) != web.String() {
		t.Errorf("dig web.names.test: %v: %q, want %s", err, out, web)
	}
	out, err = n.run(t, w.cgroup, false, "dig", "+short", "+tcp", "+tries=1", "+time=3", "www.names.test", "A")
	if err != nil || !strings.Contains(out, web.String()) {
		t.Errorf("dig +tcp www.names.test: %v: %q, want %s", err, out, web)
	}
	out, err = n.run(t, w.cgroup, false, "getent", "ahosts", "www.names.test")
	if err != nil || !strings.Contains(out, web.String()+" ") {
		t.Errorf("getent ahosts www.names.test (glibc getaddrinfo): %v: %q, want %s", err, out, web)
	}
	if n.zone.TCP.Load() == 0 {
		t.Errorf("the server saw no query over TCP")
	}

	// `exewall names` shows what each rule's lookups bound.
	var names []map[string]any
	if err := json.Unmarshal([]byte(w.ok("names", "--json")), &names); err != nil {
		t.Fatalf("names --json: %v", err)
	}
	seen := map[string]bool{}
	for _, b := range names {
		seen[fmt.Sprint(b["rule"], " ", b["addr"])] = true
	}
	for _, want := range []string{"curl " + web.String(), "dig " + web.String(), "nc " + echo.String(), "wget " + bad.String(),
		"curl " + six.String(), "getent " + web.String()} {
		if !seen[want] {
			t.Errorf("exewall names lacks %q: %v", want, names)
		}
	}
}

// TestNamesForwarderGone: with the daemon killed while its pinned
// programs stay in force, a rule with name entries resolves nothing (no
// query reaches the server) and no address is newly allowed (fail closed);
// started again, it works.
func TestNamesForwarderGone(t *testing.T) {
	lookPath(t, "curl")
	curlExe, err := filepath.EvalSymlinks("/usr/bin/curl")
	if err != nil {
		t.Fatal(err)
	}
	n := newNamesNet(t)
	web, later := n.net.Addr4(10), n.net.Addr4(20)
	n.zone.Set("web.names.test", web)
	n.zone.Set("later.names.test", later)
	w := newWorld(t)
	w.start()
	w.ok("apply", "-f", n.policy(t))
	w.ok("rule", "add", "--name", "curl", "--action", "deny", "--allow", "*.names.test port 80 tcp", "--exe", curlExe)
	curl := func(url string) (string, error) {
		return n.run(t, w.cgroup, false, "curl", "-sS", "--max-time", "5", "-4", url)
	}
	if out, err := curl("http://web.names.test/"); err != nil {
		t.Fatalf("curl with the daemon up: %v: %s", err, out)
	}
	w.stop(syscall.SIGKILL)
	before := n.zone.Queries()
	if out, err := curl("http://later.names.test/"); err == nil {
		t.Errorf("curl by name with the daemon gone worked: %s", out)
	} else if !strings.Contains(out, "resolve") {
		t.Errorf("curl with the daemon gone failed, but not in the lookup: %s", out)
	}
	if n.zone.Queries() != before {
		t.Errorf("a query reached the server with the forwarder gone")
	}
	if out, err := curl("http://" + netip.AddrPortFrom(later, 80).String() + "/"); err == nil {
		t.Errorf("curl to an address no lookup bound, with the daemon gone, worked: %s", out)
	}
	w.start()
	if out, err := curl("http://later.names.test/"); err != nil {
		t.Errorf("curl after the daemon came back: %v: %s", err, out)
	}
}

// TestNamesFirstConnect: python3's socket.getaddrinfo (glibc, through the
// test resolv.conf) of a fresh name, and at once a TCP connect to the
// fresh address it returned, 100 rounds in one process ruled by a wildcard
// added with the CLI: the first connect after each answer is allowed in
// every round.
func TestNamesFirstConnect(t *testing.T) {
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		kerneltest.Skipf(t, "no /usr/bin/python3: %v", err)
	}
	n := newNamesNet(t)
	var names []string
	for i := range 100 {
		name := fmt.Sprintf("r%d.first.names.test", i)
		n.zone.Set(name, n.net.Addr4(100+i))
		names = append(names, name)
	}
	w := newWorld(t)
	w.start()
	w.ok("apply", "-f", n.policy(t))
	w.ok("rule", "add", "--name", "py", "--action", "deny", "--allow", "*.first.names.test port 80 tcp", "--exe", python)
	script := `import socket, sys
ok = 0
for name in sys.argv[1:]:
    try:
        addr = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4]
        socket.create_connection(addr, timeout=3).close()
        ok += 1
    except Exception as e:
        print(name, type(e).__name__, e)
print("allowed", ok)
`
	out, err := n.run(t, w.cgroup, false, "python3", append([]string{"-c", script}, names...)...)
	if err != nil || !strings.Contains(out, "allowed 100\n") {
		t.Errorf("first connects: %v:\n%s", err, out)
	}
	if i := strings.LastIndex(out, "allowed"); i >= 0 {
		t.Logf("first connect after the answer: %s of 100", strings.TrimSpace(out[i:]))
	}
}

// TestNamesExpiry: an answer with a TTL of 1 s binds its address for the
// floor (10 s, `exewall status`), then `exewall names` drops it and a new
// connection to the address is denied; a new lookup allows it again.
func TestNamesExpiry(t *testing.T) {
	lookPath(t, "curl")
	curlExe, err := filepath.EvalSymlinks("/usr/bin/curl")
	if err != nil {
		t.Fatal(err)
	}
	n := newNamesNet(t)
	n.zone.SetTTL(1)
	web := n.net.Addr4(10)
	n.zone.Set("brief.names.test", web)
	w := newWorld(t)
	w.start()
	w.ok("apply", "-f", n.policy(t))
	w.ok("rule", "add", "--name", "curl", "--action", "deny", "--allow", "brief.names.test port 80 tcp", "--exe", curlExe)
	curl := func(url string) (string, error) {
		return n.run(t, w.cgroup, false, "curl", "-sS", "--max-time", "5", url)
	}
	direct := "http://" + netip.AddrPortFrom(web, 80).String() + "/"
	if out, err := curl("http://brief.names.test/"); err != nil {
		t.Fatalf("curl within the TTL: %v: %s", err, out)
	}
	if out, err := curl(direct); err != nil {
		t.Fatalf("curl to the bound address within the TTL: %v: %s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); strings.Contains(w.ok("names", "--json"), web.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("binding never expired: %s", w.ok("names", "--json"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	since := time.Now()
	if out, err := curl(direct); err == nil {
		t.Errorf("curl to the address after its binding expired worked: %s", out)
	}
	w.violationTo(since, web, 80)
	if out, err := curl("http://brief.names.test/"); err != nil {
		t.Errorf("curl after a new lookup: %v: %s", err, out)
	}
}
