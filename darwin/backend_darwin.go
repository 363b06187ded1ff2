//go:build darwin

package darwin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/exewall/exewall/engine"
)

// defaultStateDir is where the pf enable token is kept when Config.StateDir
// is empty.
const defaultStateDir = "/var/db/exewall"

// tcpdumpArgs make tcpdump write pflog0's packets as a pcap stream on
// stdout, one packet at a time (-U), headers only (-s): ReadPflog decodes
// pf's binary log header, which carries the socket's uid and pid that
// Apple's tcpdump does not print.
var tcpdumpArgs = []string{"-n", "-U", "-s", "160", "-w", "-", "-i", "pflog0"}

// Config configures the pf backend.
type Config struct {
	StateDir      string       // where the pf enable token is kept; DefaultStateDir when empty
	DetachOnClose bool         // Close removes the anchor and releases pf (--detach-on-exit)
	Logger        *slog.Logger // nil for slog.Default()
}

// Backend enforces policies with pf on macOS. It implements engine.Backend,
// engine.Syncer and engine.Resetter.
type Backend struct {
	anchor *pfAnchor
	appfw  *appFirewall // exe: rules (appfw.go)
	log    *slog.Logger
	detach bool

	viol   chan engine.Violation
	cancel context.CancelFunc
	done   chan struct{} // closed when the pflog reader has stopped

	mu        sync.Mutex // guards following and closed
	following bool       // tcpdump is running
	closed    bool
}

var (
	_ engine.Backend  = (*Backend)(nil)
	_ engine.Syncer   = (*Backend)(nil)
	_ engine.Resetter = (*Backend)(nil)
)

// New prepares the pf backend and starts reading pflog. Nothing is loaded
// into pf before the first Apply.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if _, err := exec.LookPath("pfctl"); err != nil {
		return nil, fmt.Errorf("pfctl not found: %w", engine.ErrNotSupported)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir := cfg.StateDir
	if dir == "" {
		dir = defaultStateDir
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b := &Backend{
		anchor: &pfAnchor{Pfctl: command("pfctl"), Path: AnchorPath, StateDir: dir, Log: log},
		appfw:  &appFirewall{Tool: command(SocketFilterFW), StateDir: dir, Log: log},
		log:    log,
		detach: cfg.DetachOnClose,
		viol:   make(chan engine.Violation, 1024),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go b.follow(ctx)
	return b, nil
}

// Name implements engine.Backend.
func (b *Backend) Name() string { return "pf" }

// Apply renders p with the host's current subnets and loads it into the
// anchor in one pfctl transaction; pfctl refusing it leaves the previous
// rules in force. The exe: rules go to the Application Firewall first, and
// back to what they were when pf refuses the anchor.
func (b *Backend) Apply(ctx context.Context, p *engine.Policy) error {
	rs, err := b.render(p)
	if err != nil {
		return err
	}
	prev, exes := b.appfw.Blocked(), blockedExes(p)
	if err := b.appfw.Apply(ctx, exes); err != nil {
		return err
	}
	if err := b.anchor.Load(ctx, rs); err != nil {
		if rerr := b.appfw.Apply(context.WithoutCancel(ctx), prev); rerr != nil {
			b.log.Error("pf refused the policy and the Application Firewall could not be put back; run `exewall sync`", "err", rerr)
		}
		return err
	}
	if len(exes) > 0 {
		b.log.Info("exe: rules are enforced by the Application Firewall: incoming connections only; what these programs open is not blocked", "programs", exes)
	}
	return nil
}

func (b *Backend) render(p *engine.Policy) (*ruleset, error) {
	if p == nil {
		return nil, errors.New("no policy")
	}
	// pfctl would refuse an unknown name too, without saying which rule.
	// A name and a number for one id would make pf (first rule) and the
	// engine (last rule) disagree.
	seen := map[string]string{}
	for _, r := range p.Rules {
		var key string
		var id uint32
		var err error
		switch {
		case r.User != "":
			id, err = engine.LookupUID(r.User)
			key = fmt.Sprintf("uid %d", id)
		case r.Group != "":
			id, err = engine.LookupGID(r.Group)
			key = fmt.Sprintf("gid %d", id)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Name, err)
		}
		if other, ok := seen[key]; ok {
			return nil, fmt.Errorf("rules %q and %q both select %s", other, r.Name, key)
		}
		seen[key] = r.Name
	}
	nets, err := interfaceNets()
	if err != nil {
		return nil, err
	}
	return renderRuleset(p, nets)
}

// Sync implements engine.Syncer: it reloads the anchor when its rules are
// gone or changed, when the host's subnets moved, or when pf was disabled.
func (b *Backend) Sync(ctx context.Context, p *engine.Policy) ([]engine.Drift, error) {
	rs, err := b.render(p)
	if err != nil {
		return nil, err
	}
	if err := b.appfw.Apply(ctx, blockedExes(p)); err != nil {
		return nil, err
	}
	return b.anchor.Sync(ctx, rs)
}

// State implements engine.Backend.
func (b *Backend) State(ctx context.Context) (engine.State, error) {
	st, err := b.anchor.State(ctx)
	b.mu.Lock()
	if b.following && err == nil && !strings.HasPrefix(st.Hooks[0], "not enforcing") {
		st.Hooks = append(st.Hooks, "pflog0 (tcpdump)")
	}
	b.mu.Unlock()
	if n := len(b.appfw.Blocked()); n > 0 {
		st.Hooks = append(st.Hooks, fmt.Sprintf("Application Firewall: %d exe: rules, incoming connections only", n))
		st.Rules += n
	}
	return st, err
}

// Violations implements engine.Backend.
func (b *Backend) Violations() <-chan engine.Violation { return b.viol }

// Reset implements engine.Resetter: it flushes the anchor, hands back
// pf's enable reference, and gives the Application Firewall back the
// entries and global state exewall changed.
func (b *Backend) Reset(ctx context.Context) error {
	return errors.Join(b.anchor.Remove(ctx), b.appfw.Remove(ctx))
}

// Close stops reading pflog. The rules stay in force, and so does our pf
// reference, unless the backend was told to detach.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	<-b.done
	close(b.viol)
	if b.detach {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(b.anchor.Remove(ctx), b.appfw.Remove(ctx))
	}
	return nil
}

// Checks reports, for `exewall doctor`, what this Mac supports.
func (b *Backend) Checks(ctx context.Context) []engine.Check {
	var cs []engine.Check
	on, err := b.anchor.Enabled(ctx)
	switch {
	case err != nil:
		cs = append(cs, engine.Check{Name: "pf", Detail: err.Error()})
	case on:
		cs = append(cs, engine.Check{Name: "pf", OK: true, Detail: "enabled"})
	default:
		cs = append(cs, engine.Check{Name: "pf", OK: true, Detail: "disabled now; the daemon enables it (pfctl -E) when it applies a policy"})
	}
	out, err := b.anchor.Pfctl.Run(ctx, nil, "-s", "rules")
	switch {
	case err != nil:
		cs = append(cs, engine.Check{Name: "pf anchor", Detail: err.Error()})
	case evaluates(out):
		cs = append(cs, engine.Check{Name: "pf anchor", OK: true, Detail: `the main ruleset evaluates anchor "com.apple/*", which holds ` + AnchorPath})
	default:
		cs = append(cs, engine.Check{Name: "pf anchor", Detail: `the main ruleset has no anchor "com.apple/*" rule, so ` + AnchorPath + ` is never evaluated: restore it in /etc/pf.conf`})
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		cs = append(cs, engine.Check{Name: "pflog", Optional: true, Detail: "tcpdump would report violations from pflog0; it is not installed, so none are reported"})
	} else {
		cs = append(cs, engine.Check{Name: "pflog", OK: true, Detail: "violations read from pflog0 with tcpdump"})
	}
	if _, err := os.Stat(SocketFilterFW); err != nil {
		cs = append(cs, engine.Check{Name: "exe rules", Optional: true, Detail: "exe: rules need the Application Firewall (" + SocketFilterFW + "), which is missing: " + err.Error()})
	} else {
		cs = append(cs, engine.Check{Name: "exe rules", Optional: true, Detail: "exe: rules with action deny and no entries are enforced by the Application Firewall, incoming connections only (outbound by executable would need a Network Extension); other exe: rules are refused: use user: or group: rules"})
	}
	return cs
}

// follow runs tcpdump on pflog0 and turns its lines into violations,
// restarting it when it dies.
func (b *Backend) follow(ctx context.Context) {
	defer close(b.done)
	wait := time.Second
	for {
		err := b.tcpdump(ctx)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("reading pflog failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (b *Backend) tcpdump(ctx context.Context) error {
	// macOS creates pflog interfaces on demand only.
	if _, err := net.InterfaceByName("pflog0"); err != nil {
		if _, err := command("ifconfig").Run(ctx, nil, "pflog0", "create"); err != nil {
			return fmt.Errorf("can't create pflog0: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, "tcpdump", tcpdumpArgs...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("can't run tcpdump: %w", err)
	}
	b.setFollowing(true)
	defer b.setFollowing(false)
	rerr := readPflog(ctx, out, b.anchor.Name(), b.anchor.Lookup, b.viol)
	// Whatever ended the reading, tcpdump must not block on a full pipe.
	_ = cmd.Process.Kill()
	werr := cmd.Wait()
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return fmt.Errorf("tcpdump: %w", werr)
	}
	return errors.New("tcpdump exited")
}

func (b *Backend) setFollowing(on bool) {
	b.mu.Lock()
	b.following = on
	b.mu.Unlock()
}

// interfaceNets lists the subnets of the host's interfaces (loopback aside),
// which `local-only` counts as local.
func interfaceNets() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("can't list interfaces: %w", err)
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			ip = ip.Unmap()
			if ip.Is4() && ones > 32 {
				ones -= 96
			}
			if p, err := ip.Prefix(ones); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Reset removes exewall's anchor and the pf reference a daemon kept in
// cfg.StateDir (DefaultStateDir when empty); no daemon needs to run.
func Reset(ctx context.Context, cfg Config) error {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = defaultStateDir
	}
	a := &pfAnchor{Pfctl: command("pfctl"), Path: AnchorPath, StateDir: stateDir}
	fw := &appFirewall{Tool: command(SocketFilterFW), StateDir: stateDir}
	return errors.Join(a.Remove(ctx), fw.Remove(ctx))
}
