//go:build windows

package platform

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	xwindows "golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// serviceName is the name exewall's service is installed under.
const serviceName = "exewall"

// isService reports whether this process was started by the service control
// manager (then ServeDaemon runs it under runService).
func isService() (bool, error) {
	ok, err := svc.IsWindowsService()
	if err != nil {
		return false, fmt.Errorf("detect windows service: %w", err)
	}
	return ok, nil
}

// runService runs run as the Windows service name until the service control
// manager asks it to stop (or the machine shuts down), which cancels run's
// context. It returns run's error. A run that fails on its own is reported to
// the SCM as a service-specific error, which triggers the recovery actions
// installService sets (restart).
func runService(name string, run func(ctx context.Context) error) error {
	h := &handler{run: run}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("run service %s: %w", name, err)
	}
	return h.err
}

type handler struct {
	run func(ctx context.Context) error
	err error
}

func (h *handler) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: accepts}
	stopping := false
	for {
		select {
		case err := <-done:
			h.err = err
			if err != nil && !stopping {
				return true, 1
			}
			return false, 0
		case c := <-reqs:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				if !stopping {
					stopping = true
					status <- svc.Status{State: svc.StopPending, WaitHint: 30_000}
					cancel()
				}
			}
		}
	}
}

// installService registers exePath as the exewall service, started
// automatically at boot as LocalSystem with the argument "daemon", after
// the Base Filtering Engine (serviceDependencies), restarted when it fails,
// and starts it. A binary that someone other than the administrators could
// replace is refused (checkInstallPath).
func installService(exePath string) error {
	exePath, err := filepath.Abs(exePath)
	if err != nil {
		return fmt.Errorf("service executable: %w", err)
	}
	if err := checkInstallPath(exePath); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("service %s is already installed", serviceName)
	}
	s, err := m.CreateService(serviceName, exePath, mgr.Config{
		DisplayName:  "exewall",
		Description:  "Per-executable network firewall (WFP filters).",
		StartType:    mgr.StartAutomatic,
		Dependencies: serviceDependencies,
	}, "daemon")
	if err != nil {
		return fmt.Errorf("create service %s: %w", serviceName, err)
	}
	defer s.Close()
	restart := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}
	if err := s.SetRecoveryActions(restart, uint32((24 * time.Hour).Seconds())); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", serviceName, err)
	}
	// Also restart after run returns an error, not only after a crash.
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", serviceName, err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start service %s: %w", serviceName, err)
	}
	return nil
}

// uninstallService stops the exewall service and removes it. The WFP
// filters stay in force (they are persistent, on purpose): remove them with
// the backend's Reset (`exewall reset`) before or after.
func uninstallService() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		if errors.Is(err, xwindows.ERROR_SERVICE_DOES_NOT_EXIST) {
			return fmt.Errorf("service %s is not installed", serviceName)
		}
		return fmt.Errorf("open service %s: %w", serviceName, err)
	}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return fmt.Errorf("query service %s: %w", serviceName, err)
	}
	if st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, xwindows.ERROR_SERVICE_NOT_ACTIVE) {
			return fmt.Errorf("stop service %s: %w", serviceName, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for st.State != svc.Stopped {
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s did not stop within 30s", serviceName)
			}
			time.Sleep(300 * time.Millisecond)
			if st, err = s.Query(); err != nil {
				return fmt.Errorf("query service %s: %w", serviceName, err)
			}
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("delete service %s: %w", serviceName, err)
	}
	return nil
}
