//go:build linux

package main

import (
	"bytes"
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
	out, err := install()
	if err != nil {
		exec.Command("apt-get", "update").Run()
		if out, err = install(); err != nil {
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
// configured default action, allow) with the proc process monitor (its eBPF
// monitor needs kprobes) and its iptables interception rules. Each round
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
	conf := filepath.Join(dir, "config.json")
	logFile := filepath.Join(dir, "opensnitchd.log")
	cfg := fmt.Sprintf(`{
  "Server": {"Address": "unix://%s/no-ui.sock", "LogFile": %q},
  "DefaultAction": "allow",
  "DefaultDuration": "once",
  "InterceptUnknown": false,
  "ProcMonitorMethod": "proc",
  "LogLevel": 3,
  "Firewall": "iptables",
  "Stats": {"MaxEvents": 150, "MaxStats": 25}
}
`, dir, logFile)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return skip("%v", err)
	}
	up := func(round int) error {
		var cmd *exec.Cmd
		exited := make(chan struct{})
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
			cmd = exec.Command("taskset", "-c", "0-"+fmt.Sprint(b.ncpu-1), bin, "-config-file", conf, "-rules-path", rules,
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
