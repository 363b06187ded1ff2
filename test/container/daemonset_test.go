package container

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizeDir is the kustomization the runtime test deploys.
const kustomizeDir = "../../deploy/kubernetes"

// renderDaemonSet builds deploy/kubernetes with kustomize (what `kubectl
// apply -k` sends) and returns its DaemonSet.
func renderDaemonSet() (*appsv1.DaemonSet, error) {
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), kustomizeDir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", kustomizeDir, err)
	}
	var found *appsv1.DaemonSet
	for _, r := range rm.Resources() {
		if r.GetKind() != "DaemonSet" {
			continue
		}
		data, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		found = &appsv1.DaemonSet{}
		if err := yaml.UnmarshalStrict(data, found); err != nil {
			return nil, err
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s has no DaemonSet", kustomizeDir)
	}
	return found, nil
}

// scratch is what the test puts in place of the host's real exewall.
type scratch struct {
	// HostPaths maps a hostPath volume's path to the directory standing in
	// for it; hostPath volumes not listed are the host's own paths.
	HostPaths map[string]string
	// ConfigMaps maps a ConfigMap's name to a directory holding its files.
	ConfigMaps map[string]string
	// Flags maps an --option of the container's command to the value that
	// replaces the manifest's (or is added when the manifest has none).
	Flags map[string]string
}

// mountUsed is one bind mount of the container, as the test made it.
type mountUsed struct {
	Source, Destination string
	ReadOnly            bool
	Propagation         string // podman's name: rshared, rslave, or "" (private)
}

// podmanRun is the container of the DaemonSet as `podman run` arguments.
type podmanRun struct {
	Flags       []string // before the image
	Args        []string // after the image (the entrypoint is in Flags)
	Command     []string // the full command: entrypoint and Args
	Mounts      []mountUsed
	Socket      string   // the CLI's --socket in the command
	Readiness   []string // the readiness probe's command (run with podman exec)
	Liveness    string   // the liveness probe's URL, on the host network
	StopTimeout int      // terminationGracePeriodSeconds
	Overridden  []string // the command's flags the test replaced or added
}

// Fields of the pod spec and container the translation knows. A field
// the manifest sets and this list lacks fails the translation, so the
// manifest cannot gain a privilege, mount or namespace the runtime test
// does not give its container.
var (
	podFields = map[string]string{
		"hostPID": "--pid=host", "hostNetwork": "--network=host", "hostIPC": "--ipc=host",
		"volumes": "--mount", "containers": "one container",
		"terminationGracePeriodSeconds": "--stop-timeout",
		// The API server's and scheduler's business, not the runtime's.
		"serviceAccountName": "", "automountServiceAccountToken": "", "priorityClassName": "",
		"tolerations": "", "nodeSelector": "", "affinity": "",
		// With the host network the container resolves with the node's
		// resolv.conf under podman; the cluster's DNS under Kubernetes.
		"dnsPolicy": "",
	}
	containerFields = map[string]string{
		"name": "", "image": "", "imagePullPolicy": "", "command": "--entrypoint", "args": "", "env": "--env",
		"ports": "the probes' port", "securityContext": "", "readinessProbe": "podman exec", "livenessProbe": "GET",
		"resources": "--memory --cpus --cpu-shares", "volumeMounts": "--mount", "workingDir": "--workdir",
	}
	securityFields = map[string]string{
		"privileged": "--privileged", "capabilities": "--cap-add --cap-drop", "readOnlyRootFilesystem": "--read-only",
		"runAsUser": "--user", "runAsGroup": "--user", "allowPrivilegeEscalation": "--security-opt=no-new-privileges",
	}
)

// checkFields fails on a field of v that known does not list.
func checkFields(what string, v any, known map[string]string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	for k := range m {
		if _, ok := known[k]; !ok {
			return fmt.Errorf("%s sets %s, which the runtime test does not translate to podman: teach translate()", what, k)
		}
	}
	return nil
}

// translate turns the DaemonSet's pod into `podman run` arguments, with
// s's stand-ins for the host's exewall state.
func translate(ds *appsv1.DaemonSet, s scratch) (*podmanRun, error) {
	pod := ds.Spec.Template.Spec
	if len(ds.Spec.Template.Annotations) > 0 {
		return nil, fmt.Errorf("pod annotations %v: not translated", ds.Spec.Template.Annotations)
	}
	if err := checkFields("the pod spec", pod, podFields); err != nil {
		return nil, err
	}
	if len(pod.Containers) != 1 {
		return nil, fmt.Errorf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if err := checkFields("the container", c, containerFields); err != nil {
		return nil, err
	}
	r := &podmanRun{StopTimeout: 30}
	if pod.TerminationGracePeriodSeconds != nil {
		r.StopTimeout = int(*pod.TerminationGracePeriodSeconds)
	}
	r.Flags = append(r.Flags, "--stop-timeout="+strconv.Itoa(r.StopTimeout))
	if pod.HostPID {
		r.Flags = append(r.Flags, "--pid=host")
	}
	if pod.HostNetwork {
		r.Flags = append(r.Flags, "--network=host")
	}
	if pod.HostIPC {
		r.Flags = append(r.Flags, "--ipc=host")
	}
	if sc := c.SecurityContext; sc != nil {
		if err := checkFields("the container's securityContext", sc, securityFields); err != nil {
			return nil, err
		}
		if sc.Privileged != nil && *sc.Privileged {
			r.Flags = append(r.Flags, "--privileged")
		}
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				r.Flags = append(r.Flags, "--cap-add="+string(cp))
			}
			for _, cp := range sc.Capabilities.Drop {
				r.Flags = append(r.Flags, "--cap-drop="+string(cp))
			}
		}
		if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			r.Flags = append(r.Flags, "--read-only")
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			r.Flags = append(r.Flags, "--security-opt=no-new-privileges")
		}
		if sc.RunAsUser != nil || sc.RunAsGroup != nil {
			u, g := int64(0), int64(0)
			if sc.RunAsUser != nil {
				u = *sc.RunAsUser
			}
			if sc.RunAsGroup != nil {
				g = *sc.RunAsGroup
			}
			r.Flags = append(r.Flags, fmt.Sprintf("--user=%d:%d", u, g))
		}
	}
	if err := r.mounts(pod, c, s); err != nil {
		return nil, err
	}
	if err := r.resources(c.Resources); err != nil {
		return nil, err
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s: valueFrom is not translated", e.Name)
		}
		r.Flags = append(r.Flags, "--env="+e.Name+"="+e.Value)
	}
	if c.WorkingDir != "" {
		r.Flags = append(r.Flags, "--workdir="+c.WorkingDir)
	}
	if len(c.Command) == 0 {
		return nil, fmt.Errorf("the container has no command")
	}
	r.Flags = append(r.Flags, "--entrypoint="+c.Command[0])
	args, overridden, err := override(append(append([]string{}, c.Command[1:]...), c.Args...), s.Flags)
	if err != nil {
		return nil, err
	}
	r.Args, r.Overridden = args, overridden
	r.Command = append([]string{c.Command[0]}, args...)
	r.Socket = "/run/exewall/exewall.sock"
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--socket="); ok {
			r.Socket = v
		}
	}
	if p := c.ReadinessProbe; p != nil {
		if p.Exec == nil {
			return nil, fmt.Errorf("the readiness probe is not an exec probe")
		}
		r.Readiness = p.Exec.Command
	}
	if p := c.LivenessProbe; p != nil {
		if p.HTTPGet == nil || !pod.HostNetwork {
			return nil, fmt.Errorf("the liveness probe is not an HTTP GET on the host network")
		}
		port, err := probePort(c, p.HTTPGet.Port.String(), s.Flags["--metrics-addr"], c.Command)
		if err != nil {
			return nil, err
		}
		r.Liveness = "http://127.0.0.1:" + port + p.HTTPGet.Path
	}
	return r, nil
}

// mounts adds a bind mount per volumeMount: hostPath volumes (recursive,
// as the kubelet's are), ConfigMaps from the stand-in directory.
func (r *podmanRun) mounts(pod corev1.PodSpec, c corev1.Container, s scratch) error {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return fmt.Errorf("mount %s names no volume", m.Name)
		}
		if m.SubPath != "" || m.SubPathExpr != "" || m.RecursiveReadOnly != nil {
			return fmt.Errorf("mount %s: subPath and recursiveReadOnly are not translated", m.Name)
		}
		mu := mountUsed{Destination: m.MountPath, ReadOnly: m.ReadOnly}
		switch {
		case v.HostPath != nil:
			mu.Source = v.HostPath.Path
			if stand, ok := s.HostPaths[v.HostPath.Path]; ok {
				mu.Source = stand
			}
			typ := corev1.HostPathUnset
			if v.HostPath.Type != nil {
				typ = *v.HostPath.Type
			}
			switch typ {
			case corev1.HostPathDirectoryOrCreate:
				if err := os.MkdirAll(mu.Source, 0o755); err != nil {
					return err
				}
			case corev1.HostPathDirectory, corev1.HostPathUnset:
				if fi, err := os.Stat(mu.Source); err != nil || !fi.IsDir() {
					return fmt.Errorf("hostPath %s (volume %s) is not a directory: %v", mu.Source, m.Name, err)
				}
			default:
				return fmt.Errorf("hostPath type %s (volume %s) is not translated", typ, m.Name)
			}
		case v.ConfigMap != nil:
			dir, ok := s.ConfigMaps[v.ConfigMap.Name]
			if !ok {
				return fmt.Errorf("no stand-in directory for ConfigMap %s", v.ConfigMap.Name)
			}
			// The kubelet mounts ConfigMap volumes read-only whatever the mount says.
			mu.Source, mu.ReadOnly = dir, true
		default:
			return fmt.Errorf("volume %s is neither a hostPath nor a ConfigMap: not translated", m.Name)
		}
		if p := m.MountPropagation; p != nil {
			switch *p {
			case corev1.MountPropagationBidirectional:
				mu.Propagation = "rshared"
			case corev1.MountPropagationHostToContainer:
				mu.Propagation = "rslave"
			case corev1.MountPropagationNone:
			default:
				return fmt.Errorf("mount propagation %s is not translated", *p)
			}
		}
		flag := "--mount=type=bind,source=" + mu.Source + ",destination=" + mu.Destination
		if mu.ReadOnly {
			flag += ",ro=true"
		}
		if mu.Propagation != "" {
			flag += ",bind-propagation=" + mu.Propagation
		}
		r.Mounts = append(r.Mounts, mu)
		r.Flags = append(r.Flags, flag)
	}
	return nil
}

// resources: the memory and CPU limits as the kubelet sets them.
func (r *podmanRun) resources(rs corev1.ResourceRequirements) error {
	for name := range rs.Limits {
		switch name {
		case corev1.ResourceMemory:
			r.Flags = append(r.Flags, fmt.Sprintf("--memory=%d", rs.Limits.Memory().Value()))
		case corev1.ResourceCPU:
			r.Flags = append(r.Flags, fmt.Sprintf("--cpus=%.3f", float64(rs.Limits.Cpu().MilliValue())/1000))
		default:
			return fmt.Errorf("limit %s is not translated", name)
		}
	}
	for name := range rs.Requests {
		switch name {
		case corev1.ResourceCPU:
			// The kubelet's cpu.shares for a request.
			r.Flags = append(r.Flags, fmt.Sprintf("--cpu-shares=%d", max(2, rs.Requests.Cpu().MilliValue()*1024/1000)))
		case corev1.ResourceMemory:
			// Scheduling only.
		default:
			return fmt.Errorf("request %s is not translated", name)
		}
	}
	return nil
}

// override replaces the value of each --flag=value of args named in
// flags, and adds those args lacks; it returns the flags it touched.
func override(args []string, flags map[string]string) ([]string, []string, error) {
	out := append([]string{}, args...)
	done := map[string]bool{}
	for i, a := range out {
		for name, v := range flags {
			if a == name {
				return nil, nil, fmt.Errorf("%s without =value in the command: not translated", name)
			}
			if strings.HasPrefix(a, name+"=") {
				out[i] = name + "=" + v
				done[name] = true
			}
		}
	}
	var names []string
	for name := range flags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !done[name] {
			out = append(out, name+"="+flags[name])
		}
	}
	return out, names, nil
}

// probePort is the host port the liveness probe reaches: the named
// container port must be the one the command's --metrics-addr listens on,
// which the test moves to a free port.
func probePort(c corev1.Container, port, metricsAddr string, command []string) (string, error) {
	want := port
	for _, p := range c.Ports {
		if p.Name == port {
			want = strconv.Itoa(int(p.ContainerPort))
		}
	}
	for _, a := range command {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			_, mp, err := net.SplitHostPort(v)
			if err != nil {
				return "", err
			}
			if mp != want {
				return "", fmt.Errorf("the liveness probe's port %s (%s) is not the metrics port %s", port, want, mp)
			}
			if metricsAddr == "" {
				return mp, nil
			}
			_, np, err := net.SplitHostPort(metricsAddr)
			return np, err
		}
	}
	return "", fmt.Errorf("the liveness probe's port %s: the command has no --metrics-addr", port)
}

// TestTranslateDaemonSet checks the translation the runtime test runs
// under: every mount, namespace and privilege of the manifest becomes a
// podman flag, the command is the manifest's but for the flags the test
// redirects, and a field the translation does not know is refused.
func TestTranslateDaemonSet(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the manifest's hostPath directories are a Linux node's")
	}
	ds, err := renderDaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := scratch{
		HostPaths:  map[string]string{"/run/exewall": dir + "/run", "/var/lib/exewall": dir + "/state"},
		ConfigMaps: map[string]string{"exewall-policy": dir},
		Flags:      map[string]string{"--pin-dir": "/sys/fs/bpf/x", "--metrics-addr": "127.0.0.1:1234", "--cgroup": "/sys/fs/cgroup/x"},
	}
	r, err := translate(ds, s)
	if err != nil {
		t.Fatal(err)
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	has := func(flag string) bool { return slices.Contains(r.Flags, flag) }
	if has("--pid=host") != pod.HostPID || has("--network=host") != pod.HostNetwork || has("--privileged") != *c.SecurityContext.Privileged {
		t.Errorf("namespaces or privileges differ from the manifest: %q", r.Flags)
	}
	if len(r.Mounts) != len(c.VolumeMounts) {
		t.Fatalf("%d mounts for the manifest's %d", len(r.Mounts), len(c.VolumeMounts))
	}
	for i, m := range c.VolumeMounts {
		mu := r.Mounts[i]
		if mu.Destination != m.MountPath || mu.ReadOnly != m.ReadOnly {
			t.Errorf("mount %s: %+v", m.Name, mu)
		}
		bidi := m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional
		if bidi != (mu.Propagation == "rshared") {
			t.Errorf("mount %s: propagation %q for %v", m.Name, mu.Propagation, m.MountPropagation)
		}
	}
	// The command is the manifest's, but for the redirected flags.
	want := append([]string{}, c.Command...)
	want = append(want, c.Args...)
	got := r.Command
	if len(got) != len(want)+1 || got[len(got)-1] != "--cgroup=/sys/fs/cgroup/x" {
		t.Fatalf("command %q, want the manifest's %q and --cgroup", got, want)
	}
	for i, a := range want {
		if strings.HasPrefix(a, "--pin-dir=") || strings.HasPrefix(a, "--metrics-addr=") {
			name, _, _ := strings.Cut(a, "=")
			if got[i] != name+"="+s.Flags[name] {
				t.Errorf("%s not redirected: %q", name, got[i])
			}
		} else if got[i] != a {
			t.Errorf("command argument %d: %q, the manifest's is %q", i, got[i], a)
		}
	}
	if r.Liveness != "http://127.0.0.1:1234/metrics" || len(r.Readiness) == 0 {
		t.Errorf("probes: liveness %q readiness %q", r.Liveness, r.Readiness)
	}

	// What the translation does not know, it refuses.
	for name, edit := range map[string]func(*appsv1.DaemonSet){
		"pod field": func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostUsers = new(bool) },
		"security field": func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.ProcMount = new(corev1.ProcMountType)
		},
		"volume type": func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		},
		"init container":  func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "x"}} },
		"container field": func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Containers[0].Stdin = true },
		"pod annotation":  func(d *appsv1.DaemonSet) { d.Spec.Template.Annotations = map[string]string{"a": "b"} },
		"propagation mode": func(d *appsv1.DaemonSet) {
			p := corev1.MountPropagationMode("Odd")
			d.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPropagation = &p
		},
	} {
		d := ds.DeepCopy()
		edit(d)
		if _, err := translate(d, s); err == nil {
			t.Errorf("%s: translated without complaint", name)
		}
	}
}
