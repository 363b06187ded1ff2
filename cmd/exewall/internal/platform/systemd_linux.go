package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	unit "github.com/exewall/exewall/deploy/systemd"
)

const unitName = "exewall.service"

// systemd installs and removes exewall.service. Its paths are the host's;
// tests point them into a scratch root and record systemctl's calls.
type systemd struct {
	unitDir   string // where the unit is written: /etc/systemd/system
	runDir    string // exists while systemd is PID 1: /run/systemd/system (sd_booted(3))
	systemctl func(ctx context.Context, args ...string) error
	out       io.Writer
}

func hostSystemd(out io.Writer) *systemd {
	return &systemd{unitDir: "/etc/systemd/system", runDir: "/run/systemd/system", systemctl: runSystemctl, out: out}
}

// InstallService writes the systemd unit running exe and enables it.
func InstallService(ctx context.Context, exe string, out io.Writer) error {
	return hostSystemd(out).install(ctx, exe)
}

// UninstallService stops and removes the systemd unit.
func UninstallService(ctx context.Context, out io.Writer) error {
	return hostSystemd(out).uninstall(ctx)
}

func runSystemctl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		msg := strings.Join(strings.Fields(string(out)), " ")
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

func (s *systemd) booted() bool {
	fi, err := os.Stat(s.runDir)
	return err == nil && fi.IsDir()
}

// plainPath is what ExecStart takes verbatim: systemd would expand % and $
// and split on spaces.
var plainPath = regexp.MustCompile(`^/[A-Za-z0-9._+/@-]+$`)

// hiddenDirs are invisible to the service: the unit runs with
// ProtectHome=yes and PrivateTmp=yes.
var hiddenDirs = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// unitFor is deploy/systemd/exewall.service with ExecStart running exe.
func unitFor(exe string) (string, error) {
	if !plainPath.MatchString(exe) {
		return "", fmt.Errorf("cannot write %q into a systemd unit: install exewall at a plain path such as %s and run it from there", exe, unit.ExecPath)
	}
	for _, d := range hiddenDirs {
		if exe == d || strings.HasPrefix(exe, d+"/") {
			return "", fmt.Errorf("the service could not run %s: its unit hides %s (ProtectHome=yes, PrivateTmp=yes); install the binary first (`install -m 0755 %s %s`) and run `%s service install`",
				exe, d, exe, unit.ExecPath, unit.ExecPath)
		}
	}
	const shipped = "\nExecStart=" + unit.ExecPath + " daemon\n"
	if strings.Count(unit.Unit, shipped) != 1 {
		return "", errors.New("the embedded exewall.service has no `ExecStart=" + unit.ExecPath + " daemon` line")
	}
	return strings.Replace(unit.Unit, shipped, "\nExecStart="+exe+" daemon\n", 1), nil
}

func (s *systemd) install(ctx context.Context, exe string) error {
	text, err := unitFor(exe)
	if err != nil {
		return err
	}
	path := filepath.Join(s.unitDir, unitName)
	if err := os.MkdirAll(s.unitDir, 0o755); err != nil {
		return fmt.Errorf("can't install %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("can't write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("can't write %s: %w", path, err)
	}
	fmt.Fprintf(s.out, "wrote %s (ExecStart=%s daemon)\n", path, exe)
	if !s.booted() {
		fmt.Fprintf(s.out, "systemd is not running on this machine (no %s), so nothing was enabled or started:\n"+
			"start `%s daemon` the way this machine starts services, or run `systemctl daemon-reload && systemctl enable --now exewall` once systemd runs\n",
			s.runDir, exe)
		return nil
	}
	if err := s.systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if err := s.systemctl(ctx, "enable", "--now", "exewall"); err != nil {
		return err
	}
	fmt.Fprintln(s.out, "exewall.service is enabled and started (`systemctl status exewall`, `journalctl -u exewall`)")
	return nil
}

func (s *systemd) uninstall(ctx context.Context) error {
	path := filepath.Join(s.unitDir, unitName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("exewall.service is not installed (no %s)", path)
	}
	booted := s.booted()
	if booted {
		// Stopping the daemon leaves its programs pinned in the kernel.
		if err := s.systemctl(ctx, "disable", "--now", "exewall"); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("can't remove %s: %w", path, err)
	}
	if booted {
		if err := s.systemctl(ctx, "daemon-reload"); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "stopped and disabled exewall.service and removed %s; %s\n", path, ResetHint)
		return nil
	}
	fmt.Fprintf(s.out, "removed %s (systemd is not running, so nothing was stopped); %s\n", path, ResetHint)
	return nil
}
