//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const policyRCD = "/usr/sbin/policy-rc.d"

// installOpenSnitch installs Debian's opensnitch without its recommended UI
// and without letting the package start its machine-wide service: a
// policy-rc.d that refuses service starts is in place during the install
// (and removed after, unless one was there already).
func (b *bench) installOpenSnitch() error {
	if _, err := os.Stat(policyRCD); errors.Is(err, os.ErrNotExist) {
		if err := b.cl.create(policyRCD, func() error {
			if err := os.Remove(policyRCD); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}, func() error {
			return os.WriteFile(policyRCD, []byte("#!/bin/sh\n# exewall bench: no service starts while installing\nexit 101\n"), 0o755)
		}); err != nil {
			return err
		}
		defer os.Remove(policyRCD)
	}
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "opensnitch")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		exec.Command("apt-get", "update").Run()
		if out, err := install(); err != nil {
			return fmt.Errorf("apt-get install opensnitch: %v: %s", err, lastLines(out, 3))
		}
	}
	return nil
}

func lastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "; ")
}

// openSnitchSetup prepares OpenSnitch as a connect-path engine: opensnitchd
// started headless (no UI socket to reach, so every new connection gets the
// default action, allow) with the proc process monitor (its eBPF monitor
// needs kprobes) and the interception rules of its system config. Each round
// starts it and stops it again (SIGTERM removes its rules). It intercepts
// the whole machine's new connections while it runs, which is why it is
// opt-in.
func (b *bench) openSnitchSetup() (engineSetup, bool) {
	skip := func(format string, args ...any) (engineSetup, bool) {
		b.rep.note("OpenSnitch skipped: "+format, args...)
		return engineSetup{}, false
	}
	if out, _ := exec.Command("pgrep", "-x", "opensnitchd").Output(); len(bytes.TrimSpace(out)) > 0 {
		return skip("an opensnitchd is already running on this machine (pid %s); the benchmark only measures one it starts", strings.TrimSpace(string(out)))
	}
	bin, err := exec.LookPath("opensnitchd")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: installing Debian's opensnitch (no UI, service not started)")
		if err := b.installOpenSnitch(); err != nil {
			return skip("%v", err)
		}
		if bin, err = exec.LookPath("opensnitchd"); err != nil {
			return skip("installed, but no opensnitchd in $PATH")
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "opensnitch").Output(); err == nil {
		b.rep.Machine.OpenSnitch = "opensnitch " + string(out)
	}
	dir := filepath.Join(b.tmp, "opensnitch")
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		return skip("%v", err)
	}
	// opensnitchd 1.5 reads its settings from /etc/opensnitchd/default-config.json
	// only; the benchmark does not edit it, but says what it holds.
	logFile := filepath.Join(dir, "opensnitchd.log")
	var sysCfg struct{ DefaultAction, Firewall string }
	if data, err := os.ReadFile("/etc/opensnitchd/default-config.json"); err == nil {
		json.Unmarshal(data, &sysCfg)
	}
	if sysCfg.DefaultAction != "allow" {
		return skip("/etc/opensnitchd/default-config.json has DefaultAction %q; the benchmark needs allow and does not edit the system's config", sysCfg.DefaultAction)
	}
	b.rep.Machine.OpenSnitch += fmt.Sprintf(" (DefaultAction allow, Firewall %s, process monitor proc, no UI)", sysCfg.Firewall)
	up := func(round int) error {
		var cmd *exec.Cmd
		exited := make(chan struct{})
		before := nftTables()
		// Registered first, so it runs after opensnitchd has stopped: the
		// iptables-nft tables it created, once empty, go too.
		if err := b.cl.create("tables opensnitchd created", func() error { return dropNewEmptyTables(before) }, nil); err != nil {
			return err
		}
		return b.cl.create("opensnitchd", func() error {
			if cmd == nil || cmd.Process == nil {
				return nil
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
				return errors.New("opensnitchd did not stop on SIGTERM; killed (its interception rules may be left: check iptables -t mangle -S)")
			}
			return nil
		}, func() error {
			log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer log.Close()
			// taskset: this process is pinned off the client's CPU during the
			// rounds; opensnitchd gets every CPU like a real service.
			cmd = exec.Command("taskset", "-c", "0-"+fmt.Sprint(b.ncpu-1), bin, "-rules-path", rules,
				"-ui-socket", "unix://"+filepath.Join(dir, "no-ui.sock"), "-log-file", logFile, "-process-monitor-method", "proc")
			cmd.Stdout, cmd.Stderr = log, log
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
			if err := cmd.Start(); err != nil {
				return err
			}
			go func() { cmd.Wait(); close(exited) }()
			// Ready when its queue rule is in the ruleset.
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-exited:
					return fmt.Errorf("opensnitchd exited: %s", tail(logFile))
				default:
				}
				out, _ := exec.Command("iptables-save", "-t", "mangle").Output()
				if bytes.Contains(out, []byte("NFQUEUE")) {
					time.Sleep(200 * time.Millisecond)
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("opensnitchd set no NFQUEUE rule within 15 s: %s", tail(logFile))
		})
	}
	return engineSetup{engine: engOpenSnitch, up: up}, true
}

// nftTables lists "family name" of every nftables table.
func nftTables() map[string]bool {
	out, _ := exec.Command("nft", "list", "tables").Output()
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			m[t] = true
		}
	}
	return m
}

// dropNewEmptyTables deletes the tables that appeared since before and hold
// no rules (the iptables-nft filter/mangle tables opensnitchd's rules lived
// in); anything with a rule is left alone.
func dropNewEmptyTables(before map[string]bool) error {
	var errs []error
	for t := range nftTables() {
		if before[t] {
			continue
		}
		out, err := exec.Command("sh", "-c", "nft list table "+t).Output()
		if err != nil {
			continue
		}
		empty := true
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l == "}" || strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "chain ") || strings.HasPrefix(l, "type ") || strings.HasPrefix(l, "policy ") {
				continue
			}
			empty = false
		}
		if empty {
			if out, err := exec.Command("sh", "-c", "nft delete table "+t).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("nft delete table %s: %v: %s", t, err, out))
			}
		}
	}
	return errors.Join(errs...)
}
