//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The benchmark's own nftables table and iptables chain, removed after use.
const (
	nftTable = "exewall_bench"
	iptChain = "EXEWALL_BENCH"
	uidBase  = 200000 // uids no process here runs as
)

// nftRuleset is a table with an output chain of n rules that never match
// the client: alternately a uid (meta skuid) and a cgroup (socket cgroupv2,
// naming a sibling cgroup the client is not in). nft resolves cgroupv2
// paths below /sys/fs/cgroup, so on hybrid hosts the path starts with the
// v2 mount's directory ("unified/...").
func (b *bench) nftRuleset(n int) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(b.decoyCg, "/sys/fs/cgroup"), "/")
	level := strings.Count(strings.TrimPrefix(b.decoyCg, b.cgRoot), "/")
	var s strings.Builder
	fmt.Fprintf(&s, "table inet %s {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n", nftTable)
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&s, "\t\tmeta skuid %d drop\n", uidBase+i)
		} else {
			fmt.Fprintf(&s, "\t\tsocket cgroupv2 level %d %q drop\n", level, rel)
		}
	}
	s.WriteString("\t}\n}\n")
	return s.String()
}

// iptRules is an iptables-restore file: a chain of n owner rules that never
// match the client, jumped to from OUTPUT.
func iptRules(n int) string {
	var s strings.Builder
	fmt.Fprintf(&s, "*filter\n:%s - [0:0]\n", iptChain)
	for i := range n {
		fmt.Fprintf(&s, "-A %s -m owner --uid-owner %d -j DROP\n", iptChain, uidBase+i)
	}
	fmt.Fprintf(&s, "-A OUTPUT -j %s\nCOMMIT\n", iptChain)
	return s.String()
}

func (b *bench) writeRuleFile(name, content string) (string, error) {
	path := filepath.Join(b.tmp, name)
	return path, os.WriteFile(path, []byte(content), 0o644)
}

// nftRemove deletes our table; absent is fine.
func nftRemove() error {
	if exec.Command("nft", "list", "table", "inet", nftTable).Run() != nil {
		return nil
	}
	if out, err := exec.Command("nft", "delete", "table", "inet", nftTable).CombinedOutput(); err != nil {
		return fmt.Errorf("nft delete table: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// iptablesNft says whether iptables is the nf_tables variant, whose filter
// table is an nftables table the benchmark may have created.
func iptablesNft() bool {
	out, _ := exec.Command("iptables", "--version").Output()
	return strings.Contains(string(out), "nf_tables")
}

// filterTableExists reports whether iptables' filter table exists in
// nftables (iptables-nft creates it on first use).
func filterTableExists() bool {
	return exec.Command("nft", "list", "table", "ip", "filter").Run() == nil
}

// iptRemove removes the jump and our chain. dropFilter also deletes the
// (then empty) filter table that iptables-nft created for us.
func iptRemove(dropFilter bool) error {
	for i := 0; i < 100; i++ {
		if exec.Command("iptables", "-D", "OUTPUT", "-j", iptChain).Run() != nil {
			break
		}
	}
	if exec.Command("iptables", "-n", "-L", iptChain).Run() == nil {
		if out, err := exec.Command("iptables", "-F", iptChain).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -F: %v: %s", err, out)
		}
		if out, err := exec.Command("iptables", "-X", iptChain).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -X: %v: %s", err, out)
		}
	}
	if dropFilter && iptablesNft() && filterTableExists() {
		out, _ := exec.Command("iptables-save", "-t", "filter").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") || (strings.HasPrefix(l, ":") && !strings.HasPrefix(l, ":INPUT ") &&
				!strings.HasPrefix(l, ":FORWARD ") && !strings.HasPrefix(l, ":OUTPUT ")) {
				return nil // someone else's rules: leave the table
			}
		}
		if out, err := exec.Command("nft", "delete", "table", "ip", "filter").CombinedOutput(); err != nil {
			return fmt.Errorf("nft delete table ip filter: %v: %s", err, out)
		}
	}
	return nil
}
