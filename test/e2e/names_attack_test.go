//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exewall/exewall/test/kerneltest"
)

// attackPy is the unprivileged attacker: python3 (a real interpreter,
// ruled by its path) asks a DNS server of its choosing for a name over
// UDP (connected or sendto), TCP or an IPv4-mapped IPv6 socket, then connects over TCP to each
// address it was answered, or connects to host:port directly. One JSON
// line per step: the answer, or the error, and what each connect got.
const attackPy = `import json, socket, struct, sys, random
def query(name):
    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    for l in name.split("."):
        q += bytes([len(l)]) + l.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)
def skipname(m, i):
    while True:
        l = m[i]
        if l == 0: return i + 1
        if l >= 0xc0: return i + 2
        i += 1 + l
def addrs(m):
    qd, an = struct.unpack(">HH", m[4:8])
    i = 12
    for _ in range(qd): i = skipname(m, i) + 4
    out = []
    for _ in range(an):
        i = skipname(m, i)
        typ, _, _, rdlen = struct.unpack(">HHIH", m[i:i+10])
        i += 10
        if typ == 1: out.append(socket.inet_ntoa(m[i:i+4]))
        i += rdlen
    return out
def ask(how, server, port, name):
    q = query(name)
    if how == "tcp":
        s = socket.create_connection((server, port), timeout=3)
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]
        m = b""
        while len(m) < n: m += s.recv(n - len(m))
        return addrs(m)
    if how == "mapped":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server = "::ffff:" + server
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    if how == "sendto":
        s.sendto(q, (server, port))
        return addrs(s.recvfrom(1500)[0])
    s.connect((server, port))
    s.send(q)
    return addrs(s.recv(1500))
def connect(addr, port):
    try:
        socket.create_connection((addr, port), timeout=3).close()
        return "ok"
    except PermissionError:
        return "EPERM"
    except Exception as e:
        return type(e).__name__
for step in json.loads(sys.argv[1]):
    r = {"uid": __import__("os").getuid()}
    try:
        got = [step["direct"]] if "direct" in step else ask(step["how"], step["server"], step["port"], step["name"])
        r["addrs"] = got
        r["connect"] = [connect(a, step["connect"]) for a in got]
    except PermissionError:
        r["err"] = "EPERM"
    except Exception as e:
        r["err"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(r), flush=True)
`

type attackStep struct {
	How     string `json:"how,omitempty"` // udp, sendto, tcp, mapped
	Server  string `json:"server,omitempty"`
	Port    uint16 `json:"port,omitempty"`
	Name    string `json:"name,omitempty"`
	Direct  string `json:"direct,omitempty"`
	Connect uint16 `json:"connect"`
}

type attackGot struct {
	UID     int      `json:"uid"`
	Addrs   []string `json:"addrs"`
	Connect []string `json:"connect"`
	Err     string   `json:"err"`
}

// attack runs the steps as uid 65534 in the world's cgroup.
func (n *namesNet) attack(t *testing.T, w *world, steps ...attackStep) []attackGot {
	t.Helper()
	in, _ := json.Marshal(steps)
	out, err := n.run(t, w.cgroup, true, "python3", "-c", attackPy, string(in))
	if err != nil {
		t.Fatalf("attacker: %v: %s", err, out)
	}
	var got []attackGot
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var g attackGot
		if err := json.Unmarshal([]byte(line), &g); err != nil {
			t.Fatalf("attacker output %q: %v", out, err)
		}
		if g.UID != 65534 {
			t.Fatalf("the attacker ran as uid %d, want 65534", g.UID)
		}
		got = append(got, g)
	}
	if len(got) != len(steps) {
		t.Fatalf("attacker: %d results for %d steps: %s", len(got), len(steps), out)
	}
	return got
}

// TestNamesAttacks: an unprivileged program (uid 65534, in the attach
// cgroup) whose rule allows one name cannot vouch for that name itself:
// the answers of its own DNS server (a second server in the namespace, not
// in `resolvers:`), asked over UDP (connected or not), over TCP, or
// through an IPv4-mapped IPv6 socket, and the answer of a server on a trusted resolver's address
// but another port, allow nothing, even when the rule lets the query
// itself through; the trusted resolver's answer does. A rule with a name
// entry denies DNS over TLS (port 853) unless it allows it.
func TestNamesAttacks(t *testing.T) {
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		kerneltest.Skipf(t, "no /usr/bin/python3: %v", err)
	}
	lookPath(t, "setpriv")
	n := newNamesNet(t)
	good, evil, evil2 := n.net.Addr4(30), n.net.Addr4(31), n.net.Addr4(32)
	n.zone.Set("api.names.test", good)
	n.rogue.Set("api.names.test", evil)
	n.rogue.Set("api.names.test", evil2)
	w := newWorld(t)
	w.start()
	w.ok("apply", "-f", n.policy(t))
	w.ok("rule", "add", "--name", "py", "--action", "deny", "--allow", "api.names.test port 80 tcp", "--exe", python)

	rogue := n.rogueNS.Addr().String()
	trusted := n.dns.Addr().String()
	steps := []attackStep{
		{How: "udp", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "tcp", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
	}
	for i, g := range n.attack(t, w, steps...) {
		if g.Err != "EPERM" {
			t.Errorf("%s query to its own server, the rule not allowing it: %+v, want EPERM", steps[i].How, g)
		}
	}

	// The rule lets the queries through (an ordinary connection to
	// server:53, and to the trusted address's port 5353): they are answered,
	// and the answers allow nothing.
	w.ok("rm", "py")
	w.ok("rule", "add", "--name", "py", "--action", "deny", "--allow", "api.names.test port 80 tcp",
		"--allow", rogue+" port 53", "--allow", trusted+" port 5353", "--exe", python)
	steps = []attackStep{
		{How: "udp", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "tcp", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "mapped", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "sendto", Server: rogue, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "udp", Server: trusted, Port: 5353, Name: "api.names.test", Connect: 80},
		{How: "tcp", Server: trusted, Port: 5353, Name: "api.names.test", Connect: 80},
		{Direct: evil.String(), Connect: 80},
	}
	before := n.rogue.Queries()
	for i, g := range n.attack(t, w, steps...) {
		if steps[i].Direct == "" && (g.Err != "" || len(g.Addrs) != 2) {
			t.Errorf("step %d (%s to %s:%d): %+v, want the attacker's answer", i, steps[i].How, steps[i].Server, steps[i].Port, g)
			continue
		}
		for j, c := range g.Connect {
			if c != "EPERM" {
				t.Errorf("step %d (%s to %s:%d): connect to %s: %s, want EPERM", i, steps[i].How, steps[i].Server, steps[i].Port, g.Addrs[j], c)
			}
		}
	}
	if q := n.rogue.Queries() - before; q != 6 {
		t.Errorf("the attacker's servers saw %d queries, want 6 (each asked once, unchanged)", q)
	}
	names := w.ok("names", "--json")
	for _, a := range []netip.Addr{evil, evil2} {
		if strings.Contains(names, `"`+a.String()+`"`) {
			t.Errorf("exewall names binds the attacker's answer %s: %s", a, names)
		}
	}

	// The trusted resolver's answer, asked the same ways, allows its address.
	steps = []attackStep{
		{How: "udp", Server: trusted, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "tcp", Server: trusted, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "mapped", Server: trusted, Port: 53, Name: "api.names.test", Connect: 80},
		{How: "sendto", Server: trusted, Port: 53, Name: "api.names.test", Connect: 80},
		{Direct: evil.String(), Connect: 80},
	}
	got := n.attack(t, w, steps...)
	for i, g := range got[:4] {
		if g.Err != "" || len(g.Addrs) != 1 || g.Addrs[0] != good.String() || g.Connect[0] != "ok" {
			t.Errorf("step %d (%s to the trusted resolver): %+v, want %s and ok", i, steps[i].How, g, good)
		}
	}
	if got[4].Connect[0] != "EPERM" {
		t.Errorf("the attacker's address after a trusted lookup: %+v, want EPERM", got[4])
	}

	// DoT: denied by default for a rule with a name entry, even under
	// action allow; allowed when the rule says so.
	w.ok("rm", "py")
	w.ok("rule", "add", "--name", "py", "--action", "allow", "--allow", "api.names.test port 80 tcp", "--exe", python)
	got = n.attack(t, w, attackStep{Direct: trusted, Connect: 853}, attackStep{Direct: evil.String(), Connect: 853},
		attackStep{Direct: evil.String(), Connect: 80})
	for i, want := range []string{"EPERM", "EPERM", "ok"} {
		if got[i].Err != "" || got[i].Connect[0] != want {
			t.Errorf("allow rule with a name entry, connect %d (port %d): %+v, want %s", i, []int{853, 853, 80}[i], got[i], want)
		}
	}
	w.ok("rm", "py")
	w.ok("rule", "add", "--name", "py", "--action", "allow", "--allow", "api.names.test port 80 tcp",
		"--allow", fmt.Sprintf("%s port 853 tcp", n.net.Block4), "--exe", python)
	if got := n.attack(t, w, attackStep{Direct: trusted, Connect: 853}); got[0].Connect[0] != "ok" {
		t.Errorf("DoT allowed by the rule: %+v, want ok", got[0])
	}
}
