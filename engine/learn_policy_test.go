package engine

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func dest(addr string, port uint16, proto string, n uint64) LearnDest {
	return LearnDest{Addr: netip.MustParseAddr(addr), Port: port, Proto: proto, Count: n}
}

func TestPolicyFromReport(t *testing.T) {
	var scan []LearnDest
	for i := 1; i <= 10; i++ {
		scan = append(scan, dest(fmt.Sprintf("198.51.100.%d", i), 443, "tcp", 2))
	}
	rep := LearnReport{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Events: 99, Exes: 4,
		Unattributed: map[string]uint64{"curl": 3},
		Previous: PolicyView{Default: "local-only", Mode: "enforce", Rules: []RuleView{
			{Name: "curl", Exe: "/usr/bin/curl", Action: "deny"},
			{Name: "web", Cgroup: "/system.slice/nginx.service", Action: "local-only"},
		}},
		Observed: []LearnExe{
			{Exe: "/opt/app/fetch", Comms: []string{"fetch"}, Events: 30, Dests: append(scan,
				dest("203.0.113.5", 80, "tcp", 1), dest("203.0.113.5", 443, "tcp", 1), dest("203.0.113.5", 444, "tcp", 1),
				dest("203.0.113.9", 53, "udp", 1), dest("203.0.113.9", 53, "tcp", 1),
				dest("2001:db8::1", 443, "tcp", 4), dest("127.0.0.1", 8080, "tcp", 1))},
			{Exe: "/opt/app/local", Comms: []string{"local"}, Events: 5, Dests: []LearnDest{
				dest("127.0.0.1", 8080, "tcp", 3), dest("10.1.2.3", 53, "udp", 1), dest("192.0.2.77", 22, "tcp", 1)}},
			{Exe: "/usr/bin/curl", Comms: []string{"curl"}, Events: 1, Dests: []LearnDest{dest("127.0.0.1", 80, "tcp", 1)}},
			{Exe: "/opt/other/fetch (deleted)", Comms: []string{"fetch"}, Events: 1, Dests: []LearnDest{dest("169.254.169.254", 80, "tcp", 1)}},
		},
	}
	data, p, err := LearnedPolicy(rep, LearnOptions{HostNets: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", data)
	parsed, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ViewPolicy(parsed), ViewPolicy(p)) {
		t.Fatal("returned policy differs from the text")
	}
	v := ViewPolicy(parsed)
	if v.Default != "local-only" || v.Mode != "enforce" {
		t.Fatalf("default/mode not kept: %+v", v)
	}
	want := []RuleView{
		{Name: "curl", Exe: "/usr/bin/curl", Action: "deny"},
		{Name: "web", Cgroup: "/system.slice/nginx.service", Action: "local-only"},
		{Name: "fetch", Exe: "/opt/app/fetch", Action: "deny", Allow: []string{
			"127.0.0.1/32 port 8080 tcp",
			"198.51.100.0/24 port 443 tcp",
			"203.0.113.5/32 port 80 tcp",
			"203.0.113.5/32 port 443-444 tcp",
			"203.0.113.9/32 port 53",
			"2001:db8::1/128 port 443 tcp",
		}},
		{Name: "local", Exe: "/opt/app/local", Action: "local-only"},
		{Name: "fetch-2", Exe: "/opt/other/fetch", Action: "deny", Allow: []string{"169.254.169.254/32 port 80 tcp"}},
	}
	if !reflect.DeepEqual(v.Rules, want) {
		t.Fatalf("rules:\n got %+v\nwant %+v", v.Rules, want)
	}
	for _, s := range []string{
		"# 20 attempts to 10 addresses",
		"observed /usr/bin/curl: 1 attempt to 1 destination", "left as it was",
		"only local destinations were seen",
		"curl (3)",
		"127.0.0.1:8080/tcp x3",
	} {
		if !strings.Contains(string(data), s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

func TestPolicyFromNothing(t *testing.T) {
	data, p, err := LearnedPolicy(LearnReport{Previous: PolicyView{Default: "allow", Mode: "audit"}}, LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 0 || p.Mode != ModeAudit || !strings.Contains(string(data), "rules: []") {
		t.Fatalf("%s", data)
	}
}
