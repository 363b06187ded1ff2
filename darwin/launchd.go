package darwin

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

// The LaunchDaemon that runs `exewall daemon` at boot.
const (
	ServiceLabel = "dev.exewall.daemon"
	PlistPath    = "/Library/LaunchDaemons/" + ServiceLabel + ".plist"
	// DefaultStateDir holds the daemon's state on macOS (the pf enable token).
	DefaultStateDir = "/var/db/exewall"
	// DefaultSocket is the daemon's socket on macOS, which has no /run.
	DefaultSocket = "/var/run/exewall/exewall.sock"
	// LogPath receives the daemon's stderr (its slog output).
	LogPath = "/var/log/exewall.log"
)

// DaemonArgs are the arguments the LaunchDaemon passes to exewall.
var DaemonArgs = []string{"daemon", "--socket", DefaultSocket, "--state-dir", DefaultStateDir}

// Plist renders the LaunchDaemon property list running exePath with args.
// launchd starts it at boot and restarts it if it exits; the daemon leaves
// pf's rules in place when stopped, so a restart opens no gap.
func Plist(exePath string, args []string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + ServiceLabel + `</string>
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
	<string>` + LogPath + `</string>
	<key>StandardErrorPath</key>
	<string>` + LogPath + `</string>
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

// Service installs and removes the LaunchDaemon through launchctl.
type Service struct {
	Launchctl Runner // Command("launchctl") on macOS
	Path      string // the plist; PlistPath when empty
}

func (s *Service) path() string {
	if s.Path == "" {
		return PlistPath
	}
	return s.Path
}

// Install writes the plist for exePath (which must be absolute: launchd
// has no PATH to search) and bootstraps it into the system domain, after
// booting out a running copy so a reinstall picks up the new plist.
func (s *Service) Install(ctx context.Context, exePath string) error {
	if !filepath.IsAbs(exePath) {
		return fmt.Errorf("service executable %q is not an absolute path", exePath)
	}
	if err := s.bootout(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path()), 0o755); err != nil {
		return fmt.Errorf("can't install service: %w", err)
	}
	// launchd refuses plists writable by anyone but root.
	tmp := s.path() + ".tmp"
	if err := os.WriteFile(tmp, []byte(Plist(exePath, DaemonArgs)), 0o644); err != nil {
		return fmt.Errorf("can't write %s: %w", s.path(), err)
	}
	if err := os.Rename(tmp, s.path()); err != nil {
		return fmt.Errorf("can't write %s: %w", s.path(), err)
	}
	// A service once disabled with launchctl stays disabled across boots.
	if _, err := s.Launchctl.Run(ctx, nil, "enable", "system/"+ServiceLabel); err != nil {
		return fmt.Errorf("can't enable service: %w", err)
	}
	if _, err := s.Launchctl.Run(ctx, nil, "bootstrap", "system", s.path()); err != nil {
		return fmt.Errorf("can't start service: %w", err)
	}
	return nil
}

// Uninstall boots the daemon out (it leaves pf's rules in place: `exewall
// reset` removes them) and deletes the plist.
func (s *Service) Uninstall(ctx context.Context) error {
	if err := s.bootout(ctx); err != nil {
		return err
	}
	if err := os.Remove(s.path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("can't remove %s: %w", s.path(), err)
	}
	return nil
}

// bootout stops the service; not being loaded is fine.
func (s *Service) bootout(ctx context.Context) error {
	_, err := s.Launchctl.Run(ctx, nil, "bootout", "system/"+ServiceLabel)
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
