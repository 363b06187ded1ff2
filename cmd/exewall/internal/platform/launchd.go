package platform

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The LaunchDaemon that runs `exewall daemon` at boot on macOS. This file
// has no build tag so that its tests run everywhere (with a fake
// launchctl); only platform_darwin.go uses it.
const (
	launchdLabel = "dev.exewall.daemon"
	launchdPlist = "/Library/LaunchDaemons/" + launchdLabel + ".plist"
	// darwinSocket is the daemon's socket on macOS, which has no /run.
	darwinSocket = "/var/run/exewall/exewall.sock"
	// darwinStateDir holds the daemon's state on macOS (the pf enable token).
	darwinStateDir = "/var/db/exewall"
	// launchdLog receives the daemon's stderr (its slog output).
	launchdLog = "/var/log/exewall.log"
)

// launchdArgs are the arguments the LaunchDaemon passes to exewall.
var launchdArgs = []string{"daemon", "--socket", darwinSocket, "--state-dir", darwinStateDir}

// plist renders the LaunchDaemon property list running exePath with args.
// launchd starts it at boot and restarts it if it exits; the daemon leaves
// pf's rules in place when stopped, so a restart opens no gap.
func plist(exePath string, args []string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + launchdLabel + `</string>
	<key>ProgramArguments</key>
	<array>
`)
	for _, a := range append([]string{exePath}, args...) {
		b.WriteString("\t\t<string>" + xmlText(a) + "</string>\n")
	}
	b.WriteString(`	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<true/>
	<key>StandardOutPath</key>
	<string>` + launchdLog + `</string>
	<key>StandardErrorPath</key>
	<string>` + launchdLog + `</string>
</dict>
</plist>
`)
	return b.String()
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// launchd installs and removes the LaunchDaemon through launchctl.
type launchd struct {
	launchctl string // the program; "launchctl" on macOS
	path      string // the plist; launchdPlist when empty
	// safe checks that the executable and its directories are writable by
	// root only (checkInstallPath); tests that install from a scratch
	// directory replace it.
	safe func(exe string) error
}

func (s *launchd) plistPath() string {
	if s.path == "" {
		return launchdPlist
	}
	return s.path
}

func (s *launchd) run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, s.launchctl, args...).CombinedOutput()
	if err != nil {
		msg := strings.Join(strings.Fields(string(out)), " ")
		return fmt.Errorf("launchctl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// install writes the plist for exePath (which must be absolute: launchd
// has no PATH to search, and root-owned: launchd runs it as root) and
// bootstraps it into the system domain, after booting out a running copy so
// a reinstall picks up the new plist.
func (s *launchd) install(ctx context.Context, exePath string) error {
	if !filepath.IsAbs(exePath) {
		return fmt.Errorf("service executable %q is not an absolute path", exePath)
	}
	if err := s.safe(exePath); err != nil {
		return err
	}
	if err := s.bootout(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.plistPath()), 0o755); err != nil {
		return fmt.Errorf("can't install service: %w", err)
	}
	// launchd refuses plists writable by anyone but root.
	tmp := s.plistPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(plist(exePath, launchdArgs)), 0o644); err != nil {
		return fmt.Errorf("can't write %s: %w", s.plistPath(), err)
	}
	if err := os.Rename(tmp, s.plistPath()); err != nil {
		return fmt.Errorf("can't write %s: %w", s.plistPath(), err)
	}
	// A service once disabled with launchctl stays disabled across boots.
	if err := s.run(ctx, "enable", "system/"+launchdLabel); err != nil {
		return fmt.Errorf("can't enable service: %w", err)
	}
	if err := s.run(ctx, "bootstrap", "system", s.plistPath()); err != nil {
		return fmt.Errorf("can't start service: %w", err)
	}
	return nil
}

// uninstall boots the daemon out (it leaves pf's rules in place: `exewall
// reset` removes them) and deletes the plist.
func (s *launchd) uninstall(ctx context.Context) error {
	if err := s.bootout(ctx); err != nil {
		return err
	}
	if err := os.Remove(s.plistPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("can't remove %s: %w", s.plistPath(), err)
	}
	return nil
}

// bootout stops the service; not being loaded is fine.
func (s *launchd) bootout(ctx context.Context) error {
	err := s.run(ctx, "bootout", "system/"+launchdLabel)
	var exit *exec.ExitError
	if err == nil || errors.As(err, &exit) && notLoaded(exit.ExitCode()) {
		return nil
	}
	return fmt.Errorf("can't stop service: %w", err)
}

// notLoaded reports launchctl's exit codes for a service that is not
// loaded: 3 (ESRCH, "No such process") and 113 ("Could not find specified
// service").
func notLoaded(code int) bool { return code == 3 || code == 113 }
