//go:build linux

package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/exewall/exewall/linux"
)

// hostOwn are the hostPath volumes the containerised daemon must share
// with the host (they are the host's cgroups, bpffs and processes; the
// test works in scratch parts of them through --cgroup and --pin-dir).
// Every other hostPath volume, the daemon's own state, gets a stand-in.
var hostOwn = map[string]bool{"/sys/fs/cgroup": true, "/sys/fs/bpf": true, "/proc": true}

// TestDaemonSetUnderPodman runs the image as deploy/kubernetes runs it:
// the daemon in the container enforces a deny on a program on the host,
// reports it through `exewall violations` in the container, keeps it in
// force while no container runs, is adopted by the next container with
// no gap, and `exewall reset` from the image removes it all.
func TestDaemonSetUnderPodman(t *testing.T) {
	cgroupRoot := requireRoot(t)
	start := time.Now()
	dir := t.TempDir()
	ds, err := renderDaemonSet()
	if err != nil {
		t.Fatal(err)
	}

	p := newPodman(t)
	img := buildImage(t, filepath.Join(dir, "image"))
	t.Logf("image %s (%s): %d bytes, %d unpacked", img.Digest, img.Ref, img.Size, img.UnpackedSize)
	name := randName("exewall-image-")
	containers := []string{name + "-a", name + "-b", name + "-reset"}
	t.Cleanup(func() { p.cleanup(containers, img.ConfigDigest) })
	p.must("load", "-q", "-i", img.Archive)
	id := strings.TrimPrefix(img.ConfigDigest, "sha256:")
	p.chooseRuntime(id)

	// Scratch: an attach cgroup with the program's cgroup below it, a pin dir.
	cgroup := filepath.Join(cgroupRoot, name)
	app := filepath.Join(cgroup, "app")
	for _, d := range []string{cgroup, app} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { removeCgroups(t, app, cgroup) })
	pinDir := filepath.Join("/sys/fs/bpf", name)
	t.Cleanup(func() {
		if _, err := os.Stat(pinDir); err == nil {
			t.Errorf("pin dir %s left behind; removing it", pinDir)
			linux.Reset(context.Background(), linux.Config{PinDir: pinDir})
		}
	})

	s := scratch{HostPaths: map[string]string{}, ConfigMaps: map[string]string{}, Flags: map[string]string{
		"--pin-dir":      pinDir,
		"--cgroup":       cgroup,
		"--metrics-addr": "127.0.0.1:" + freePort(t),
	}}
	policyFile := "policy.yaml"
	for _, a := range ds.Spec.Template.Spec.Containers[0].Command {
		if v, ok := strings.CutPrefix(a, "--policy="); ok {
			policyFile = filepath.Base(v)
		}
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		switch {
		case v.HostPath != nil && !hostOwn[v.HostPath.Path]:
			s.HostPaths[v.HostPath.Path] = filepath.Join(dir, "host", v.Name)
		case v.ConfigMap != nil:
			cm := filepath.Join(dir, "configmap", v.ConfigMap.Name)
			os.MkdirAll(cm, 0o755)
			policy := "default: allow\nmode: enforce\nrules:\n  - name: scratch-app\n    cgroup: /" + name + "/app\n    action: deny\n"
			if err := os.WriteFile(filepath.Join(cm, policyFile), []byte(policy), 0o644); err != nil {
				t.Fatal(err)
			}
			s.ConfigMaps[v.ConfigMap.Name] = cm
		}
	}
	r, err := translate(ds, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("podman run %s IMAGE %s", strings.Join(r.Flags, " "), strings.Join(r.Args, " "))

	ln, accepted := listen(t)
	addr := ln.Addr().String()

	// 1. A container enforces the deny on a program on the host.
	p.start(r, containers[0], id)
	t.Logf("%s ready after %v", containers[0], time.Since(start).Round(time.Millisecond))
	p.live(r)
	word, pid := once(t, app, addr)
	if word != "EPERM" {
		t.Fatalf("connect from the scratch cgroup: %s, want EPERM", word)
	}
	p.violation(r, containers[0], pid, addr)
	if logs := p.must("logs", containers[0]); !strings.Contains(logs, `"rule":"scratch-app"`) {
		t.Errorf("the container log (--log-format=json: violations on stdout) has no violation:\n%s", logs)
	}
	hooked := attached(t, cgroup)
	if len(hooked) != 1 {
		t.Fatalf("connect4 of the scratch cgroup holds %v, want one program", hooked)
	}

	links := pinnedLinks(t, pinDir)
	if links == "" {
		t.Fatalf("no links pinned in %s", pinDir)
	}

	// 2. While a loop of connections runs, the container is replaced.
	l := startLoop(t, app, addr)
	n := l.waitFor(t, 50)
	p.must("stop", "-t", itoa(r.StopTimeout), containers[0])
	if code := strings.TrimSpace(p.must("inspect", "-f", "{{.State.ExitCode}}", containers[0])); code != "0" {
		t.Errorf("%s exited %s on SIGTERM", containers[0], code)
	}
	p.must("rm", containers[0])
	if word, _ := once(t, app, addr); word != "EPERM" {
		t.Errorf("with no container running: %s, want EPERM (enforcement stays)", word)
	}
	n = l.waitFor(t, n+50) // attempts while no daemon runs at all
	p.start(r, containers[1], id)
	// Adopted: the first container's pinned links, and no second attachment.
	if got := attached(t, cgroup); len(got) != 1 {
		t.Errorf("connect4 holds %v under the second container, want one program", got)
	}
	if got := pinnedLinks(t, pinDir); got != links {
		t.Errorf("pinned links under the second container: %s; under the first: %s", got, links)
	} else {
		t.Logf("the second container adopted %s", links)
	}
	l.waitFor(t, n+50)
	counts := l.stop()
	t.Logf("connect loop across the replacement: %d EPERM, %d let through, %d other", counts['E'], counts['S'], counts['X'])
	if counts['S'] != 0 || counts['X'] != 0 || accepted.Load() != 0 || counts['E'] < 150 {
		t.Errorf("the loop got through %d times (%d other errors, %d accepted), want EPERM every time", counts['S'], counts['X'], accepted.Load())
	}
	word, pid = once(t, app, addr)
	if word != "EPERM" {
		t.Fatalf("under the second container: %s, want EPERM", word)
	}
	p.violation(r, containers[1], pid, addr)
	p.must("stop", "-t", itoa(r.StopTimeout), containers[1])
	p.must("rm", containers[1])

	// 3. exewall reset from the image removes everything.
	out, errOut, err := p.run(append(r.Flags, "--rm", "--name", containers[2]), id,
		"--socket="+r.Socket, "reset", "--pin-dir="+pinDir)
	if err != nil {
		t.Fatalf("exewall reset in a container: %v\n%s%s", err, out, errOut)
	}
	t.Logf("reset: %s", strings.TrimSpace(out))
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after reset: %v", err)
	}
	if got := attached(t, cgroup); len(got) != 0 {
		t.Errorf("%v left on the scratch cgroup after reset", got)
	}
	if word, _ := once(t, app, addr); word != "ok" || accepted.Load() != 1 {
		t.Errorf("after reset: %s (%d accepted), want the connection through", word, accepted.Load())
	}
	t.Logf("wall time %v", time.Since(start).Round(time.Millisecond))
}

// start runs the DaemonSet's container under name and waits until its
// readiness probe passes.
func (p *podman) start(r *podmanRun, name, image string) {
	p.t.Helper()
	if out, errOut, err := p.run(append(append([]string{}, r.Flags...), "-d", "--name", name), image, r.Args...); err != nil {
		p.t.Fatalf("podman run %s: %v\n%s%s", name, err, out, errOut)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, _, err := p.cmd(append([]string{"exec", name}, r.Readiness...)...)
		if err == nil {
			return
		}
		if running, _, _ := p.cmd("inspect", "-f", "{{.State.Running}}", name); strings.TrimSpace(running) != "true" || time.Now().After(deadline) {
			logs, errLogs, _ := p.cmd("logs", name)
			p.t.Fatalf("%s never became ready (readiness probe: %v):\n%s%s", name, err, logs, errLogs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// live runs the liveness probe: GET /metrics on the host network.
func (p *podman) live(r *podmanRun) {
	p.t.Helper()
	resp, err := http.Get(r.Liveness)
	if err != nil {
		p.t.Fatalf("liveness probe %s: %v", r.Liveness, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "exewall_rules 1") {
		p.t.Errorf("liveness probe %s: %s, no exewall_rules 1", r.Liveness, resp.Status)
	}
}

// violation waits for `exewall violations --json`, run in the container,
// to report the client's denied attempt.
func (p *podman) violation(r *podmanRun, name string, pid int, addr string) {
	p.t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var out string
	for i := 0; i < 100; i++ {
		out = p.must("exec", name, r.Command[0], "--socket="+r.Socket, "violations", "--json")
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var v struct {
				PID     int    `json:"pid"`
				Rule    string `json:"rule"`
				Verdict string `json:"verdict"`
				Daddr   string `json:"daddr"`
				Dport   int    `json:"dport"`
			}
			if json.Unmarshal(sc.Bytes(), &v) == nil && v.PID == pid && v.Rule == "scratch-app" &&
				v.Verdict == "deny" && v.Daddr == host && itoa(v.Dport) == port {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Errorf("exewall violations in %s does not report pid %d's attempt to %s:\n%s", name, pid, addr, out)
}

// cleanup removes the containers and the image, and checks that the
// storage holds nothing.
func (p *podman) cleanup(containers []string, image string) {
	t := p.t
	p.cmd(append([]string{"rm", "-f", "--ignore", "-t", "0"}, containers...)...)
	p.cmd("rmi", "-f", image)
	if out, _, _ := p.cmd("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %s", out)
	}
	if out, _, _ := p.cmd("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images left: %s", out)
	}
}

// attached lists the links (or, where the kernel does not say, programs)
// on the cgroup's connect4 hook.
func attached(t *testing.T, cgroup string) []string {
	t.Helper()
	f, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: ebpf.AttachCGroupInet4Connect})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range q.Programs {
		if id, ok := p.LinkID(); ok {
			out = append(out, "link "+strconv.Itoa(int(id)))
		} else {
			out = append(out, "program "+strconv.Itoa(int(p.ID)))
		}
	}
	return out
}

// pinnedLinks names the cgroup links pinned in dir (the enforcement; a
// tracing link such as exec's may be made anew by each daemon) with their
// kernel IDs.
func pinnedLinks(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue // a map or a program
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != link.CgroupType {
			continue
		}
		out = append(out, e.Name()+"="+strconv.Itoa(int(info.ID)))
	}
	return strings.Join(out, " ")
}

// listen accepts (and counts) connections on loopback: one getting
// through the deny shows up here.
func listen(t *testing.T) (net.Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln, &n
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// removeCgroups removes the scratch cgroups (children first); only the
// test's own clients can be in them.
func removeCgroups(t *testing.T, dirs ...string) {
	for _, d := range dirs {
		for i := 0; ; i++ {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if i == 100 {
				t.Errorf("scratch cgroup %s could not be removed: %v", d, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
