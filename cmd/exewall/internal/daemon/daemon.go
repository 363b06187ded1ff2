// Package daemon runs exewall's daemon: it loads the backend, puts the
// policy file in force through an engine.Manager, serves the API on its
// socket (a named pipe on Windows), follows the policy file, keeps the
// violations log, checks the kernel for tampering and exposes metrics.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/exewall/exewall/cmd/exewall/internal/api"
	"github.com/exewall/exewall/cmd/exewall/internal/platform"
	"github.com/exewall/exewall/engine"
)

// Config is what `exewall daemon` was told.
type Config struct {
	Socket       string
	Policy       string
	Cgroup       string // "" = the cgroup v2 mount root
	PinDir       string
	StateDir     string
	LogFile      string // "" = stderr
	LogFormat    string // text | json
	MetricsAddr  string // "" = no metrics
	DetachOnExit bool
	SyncInterval time.Duration // 0 = no periodic sync
	// LogMaxSize and LogKeep bound the violations log.
	LogMaxSize int64
	LogKeep    int
}

// newLogger builds the daemon's slog logger.
func newLogger(cfg Config) (*slog.Logger, io.Closer, error) {
	var w io.Writer = os.Stderr
	var closer io.Closer = io.NopCloser(nil)
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log: %w", err)
		}
		w, closer = f, f
	}
	var h slog.Handler
	switch cfg.LogFormat {
	case "", "text":
		h = slog.NewTextHandler(w, nil)
	case "json":
		h = slog.NewJSONHandler(w, nil)
	default:
		return nil, nil, fmt.Errorf("unknown log format %q (want text or json)", cfg.LogFormat)
	}
	return slog.New(h), closer, nil
}

// Run runs the daemon until SIGTERM or SIGINT (or ctx is done). On return
// enforcement stays in the kernel unless cfg.DetachOnExit.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Socket == "" {
		cfg.Socket = platform.DefaultSocket
	}
	if cfg.Policy == "" {
		cfg.Policy = platform.DefaultPolicy
	}
	if cfg.StateDir == "" {
		cfg.StateDir = platform.DefaultStateDir
	}
	if cfg.PinDir == "" {
		cfg.PinDir = platform.DefaultPinDir
	}
	if cfg.LogMaxSize == 0 {
		cfg.LogMaxSize = 10 << 20
	}
	if cfg.LogKeep == 0 {
		cfg.LogKeep = 3
	}
	heapSamplingOnlyWhenAsked() // memory.go
	log, logCloser, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer logCloser.Close()
	endProfile := startProfile(log) // profile.go
	defer endProfile()
	if p, err := filepath.Abs(cfg.Policy); err == nil {
		cfg.Policy = p
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var policyBytes int64
	if st, err := os.Stat(cfg.Policy); err == nil {
		policyBytes = st.Size()
	}
	backendLoaded := tuneGC(policyBytes) // memory.go
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	vlog, err := openViolationLog(filepath.Join(cfg.StateDir, "violations.log"), cfg.LogMaxSize, cfg.LogKeep)
	if err != nil {
		return err
	}
	defer vlog.close()
	vlog.log = log

	// The policy file is parsed while the backend loads.
	ahead := engine.ParseAhead(cfg.Policy)
	backend, err := platform.NewBackend(ctx, platform.Config{Cgroup: cfg.Cgroup, PinDir: cfg.PinDir, StateDir: cfg.StateDir, DetachOnExit: cfg.DetachOnExit, Logger: log})
	backendLoaded()
	if err != nil {
		return fmt.Errorf("start backend: %w", err)
	}
	defer func() {
		if err := backend.Close(); err != nil {
			log.Error("close backend", "err", err)
		}
		if cfg.DetachOnExit {
			log.Info("enforcement removed from the kernel (--detach-on-exit)")
		} else {
			log.Info("enforcement left in place; a restarted daemon adopts it")
		}
	}()

	var mt *metrics
	var m *engine.Manager
	streamDone := make(chan struct{})
	defer close(streamDone)
	vstream := newViolationStream(cfg.LogFormat, os.Stdout, log, streamDone) // stdout.go
	m = engine.NewManager(engine.ManagerConfig{
		Backend: backend, PolicyFile: cfg.Policy, Logger: log,
		RollbackFile: filepath.Join(cfg.StateDir, "rollback.yaml"), Ahead: ahead,
		RunnableCache: filepath.Join(cfg.StateDir, "runnable.cache"),
		OnViolation: func(v engine.Violation) {
			if err := vlog.write(v); err != nil {
				log.Error("write violations log", "path", vlog.path, "err", err)
			}
			if mt != nil {
				mt.violations.WithLabelValues(string(v.Verdict)).Add(float64(max(v.Count, 1)))
			}
			vstream.write(v)
		},
		// A full disk under the state dir costs log lines, never
		// enforcement; status and /metrics say how many.
		Report: func(s *engine.Status) {
			lost, err := vlog.stats()
			s.ViolationsLogLost = lost
			if err != nil {
				s.ViolationsLogError = err.Error()
			}
		},
	})
	defer m.Close()
	// A learning session learns names from the DNS forwarder's answers.
	if o, ok := backend.(interface {
		SetLookupObserver(func(string, []engine.LearnLookup))
	}); ok {
		o.SetLookupObserver(m.ObserveLookups)
	}
	if err := m.Load(ctx); err != nil {
		return fmt.Errorf("%w%s", err, api.Hint(err))
	}
	mt = newMetrics(m)

	done := make(chan struct{})
	defer close(done)
	go m.Run(ctx)
	go vlog.flushEvery(time.Second, done)

	if cfg.MetricsAddr != "" {
		addr, err := mt.serve(ctx, cfg.MetricsAddr, log)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("serving metrics", "addr", "http://"+addr.String()+"/metrics")
	}
	if err := watchPolicy(ctx, m, cfg.Policy, log); err != nil {
		// Not fatal: SIGHUP still reloads.
		log.Warn("cannot watch the policy file; reload with SIGHUP", "err", err)
	}
	// Subscribe before READY=1: a SIGHUP that arrives first would otherwise
	// take Go's default action and end the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go reloadOnHUP(ctx, hup, m, log)
	if cfg.SyncInterval > 0 {
		go syncEvery(ctx, m, cfg.SyncInterval, mt, log)
	}

	l, err := platform.Listen(cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	defer l.Close() // removes the socket; the server closing it first is fine
	serveErr := make(chan error, 1)
	go func() { serveErr <- api.Serve(ctx, l, api.Options{Manager: m, Log: log, AllowUID: 0}) }()

	st := describe(ctx, backend, m)
	p := m.Policy()
	log.Info("exewall ready", "backend", st.Backend, "cgroup", st.AttachPoint, "hooks", st.Hooks, "policy", cfg.Policy,
		"rules", len(p.Rules), "default", p.Default.String(), "mode", p.Mode.String(), "socket", cfg.Socket,
		"managed", m.Managed() != nil)
	endProfile()
	if err := sdNotify("READY=1\nSTATUS=enforcing " + cfg.Policy); err != nil {
		log.Warn("notify service manager", "err", err)
	}
	go releaseStartMemory(log, m)
	go trimHeap(ctx)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		sdNotify("STOPPING=1")
		return nil
	case err := <-serveErr:
		if err == nil {
			return errors.New("api server stopped")
		}
		return fmt.Errorf("api server: %w", err)
	}
}

func reloadOnHUP(ctx context.Context, hup chan os.Signal, m *engine.Manager, log *slog.Logger) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(ctx, m, log, "SIGHUP")
		}
	}
}

func reload(ctx context.Context, m *engine.Manager, log *slog.Logger, why string) {
	changed, err := m.Reload(ctx)
	switch {
	case err != nil:
		log.Error("policy file refused; the policy in force stays", "trigger", why, "err", err)
	case changed:
		p := m.Policy()
		log.Info("policy reloaded", "trigger", why, "rules", len(p.Rules), "default", p.Default.String(), "mode", p.Mode.String())
	}
}

func syncEvery(ctx context.Context, m *engine.Manager, every time.Duration, mt *metrics, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		drift, err := m.Sync(ctx)
		if errors.Is(err, engine.ErrNotSupported) {
			log.Info("periodic tamper check unavailable", "err", err)
			return
		}
		if err != nil {
			log.Error("periodic sync", "err", err)
			continue
		}
		for _, d := range drift {
			mt.tamper.Inc()
			log.Warn("tamper: kernel state differed from the policy", "what", d.What, "repaired", d.Repaired, "by", "periodic sync")
		}
	}
}

// describe is what the READY line says of the backend: its name, attach
// point and hooks, without the rule counters that Status reads (at
// 100,000 rules a read of every slot on every CPU and a map of 100,000
// entries: ~0.16 s of CPU before READY).
func describe(ctx context.Context, backend engine.Backend, m *engine.Manager) engine.State {
	if d, ok := backend.(interface{ Describe() engine.State }); ok {
		return d.Describe()
	}
	st, _ := m.Status(ctx)
	return engine.State{Backend: st.Backend, AttachPoint: st.AttachPoint, Hooks: st.Hooks}
}
