// Package kubernetes holds exewall's manifests (kubectl apply -k); its test
// decodes each one strictly into the Kubernetes API types, checks what the
// daemon needs of them, and builds the kustomization with kustomize.
package kubernetes

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/exewall/exewall/engine"
)

type objects struct {
	ns  *corev1.Namespace
	sa  *corev1.ServiceAccount
	cm  *corev1.ConfigMap
	ds  *appsv1.DaemonSet
	all int
}

// decode reads YAML documents strictly (unknown fields are errors) into
// the typed API objects their kind names.
func decode(t *testing.T, data []byte, o *objects) {
	t.Helper()
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		var into any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			o.ns = &corev1.Namespace{}
			into = o.ns
		case "v1 ServiceAccount":
			o.sa = &corev1.ServiceAccount{}
			into = o.sa
		case "v1 ConfigMap":
			o.cm = &corev1.ConfigMap{}
			into = o.cm
		case "apps/v1 DaemonSet":
			o.ds = &appsv1.DaemonSet{}
			into = o.ds
		default:
			t.Fatalf("unexpected object %s %s", tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %v", tm.Kind, err)
		}
		o.all++
	}
}

func (o *objects) check(t *testing.T) {
	t.Helper()
	if o.ns == nil || o.sa == nil || o.cm == nil || o.ds == nil {
		t.Fatalf("missing objects: %+v", o)
	}
	for _, name := range []string{o.ns.Name, o.sa.Name, o.cm.Name, o.ds.Name} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("name %q: %v", name, errs)
		}
	}
	for _, m := range []string{o.sa.Namespace, o.cm.Namespace, o.ds.Namespace} {
		if m != o.ns.Name {
			t.Errorf("object in namespace %q, want %q", m, o.ns.Name)
		}
	}

	// The policy parses as the daemon will read it.
	policy, ok := o.cm.Data["policy.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no policy.yaml")
	}
	p, err := engine.Parse([]byte(policy))
	if err != nil {
		t.Fatalf("ConfigMap policy: %v", err)
	}
	cgroupRule := false
	for _, r := range p.Rules {
		cgroupRule = cgroupRule || strings.HasPrefix(r.Cgroup, "/kubepods")
	}
	if !cgroupRule {
		t.Error("the sample policy has no cgroup: rule for a pod")
	}

	ds := o.ds.Spec
	pod := ds.Template.Spec
	if ds.Selector == nil || len(ds.Selector.MatchLabels) == 0 {
		t.Fatal("DaemonSet has no selector")
	}
	for k, v := range ds.Selector.MatchLabels {
		if ds.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, ds.Template.Labels)
		}
	}
	if !pod.HostPID || !pod.HostNetwork {
		t.Error("the daemon needs hostPID and hostNetwork")
	}
	if pod.ServiceAccountName != o.sa.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, o.sa.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image == "" || len(c.Command) == 0 {
		t.Fatal("container without image or command")
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the container must be privileged (eBPF, bpffs Bidirectional propagation)")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s names no volume", m.Name)
		}
		mounts[m.MountPath] = m
	}
	hostPath := func(mount, path string) corev1.VolumeMount {
		t.Helper()
		m, ok := mounts[mount]
		if !ok {
			t.Errorf("nothing mounted at %s", mount)
			return m
		}
		if hp := volumes[m.Name].HostPath; hp == nil || hp.Path != path {
			t.Errorf("%s is not the host's %s", mount, path)
		}
		return m
	}
	hostPath("/sys/fs/cgroup", "/sys/fs/cgroup")
	hostPath("/host/proc", "/proc")
	if m := hostPath("/sys/fs/bpf", "/sys/fs/bpf"); m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
		t.Error("bpffs must be mounted with Bidirectional propagation (pins must reach the host)")
	}
	pm, ok := mounts["/etc/exewall"]
	if !ok || !pm.ReadOnly || volumes[pm.Name].ConfigMap == nil || volumes[pm.Name].ConfigMap.Name != o.cm.Name {
		t.Errorf("the policy must come read-only from ConfigMap %s at /etc/exewall (managed mode): %+v", o.cm.Name, pm)
	}
	args := strings.Join(c.Command, " ")
	for _, want := range []string{"daemon", "--policy=/etc/exewall/policy.yaml", "--log-format=json"} {
		if !strings.Contains(args, want) {
			t.Errorf("command %q lacks %s", args, want)
		}
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	var o objects
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		decode(t, data, &o)
	}
	o.check(t)
}

func TestKustomizeBuild(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var o objects
	decode(t, out, &o)
	if o.all != 4 {
		t.Fatalf("%d objects, want 4:\n%s", o.all, out)
	}
	o.check(t)
	// The image is named by digest (deploy/image -pin writes it).
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kz types.Kustomization
	if err := yaml.UnmarshalStrict(data, &kz); err != nil {
		t.Fatal(err)
	}
	if len(kz.Images) != 1 || kz.Images[0].NewTag != "" ||
		!regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(kz.Images[0].Digest) ||
		strings.Trim(kz.Images[0].Digest, "sha256:0") == "" {
		t.Fatalf("images: %+v, want one entry with a digest and no tag", kz.Images)
	}
	want := kz.Images[0].NewName + "@" + kz.Images[0].Digest
	if img := o.ds.Spec.Template.Spec.Containers[0].Image; img != want {
		t.Errorf("image %q, want %q: the kustomization's images: entry was not applied", img, want)
	}
	if o.ds.Labels["app.kubernetes.io/part-of"] != "exewall" {
		t.Errorf("labels not applied: %v", o.ds.Labels)
	}
}

// TestDaemonFlagsExist runs the real binary's `daemon --help`: every flag
// the DaemonSet passes must be one the daemon takes.
func TestDaemonFlagsExist(t *testing.T) {
	var o objects
	data, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	decode(t, data, &o)
	help, err := exec.Command("go", "run", "../../cmd/exewall", "daemon", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("exewall daemon --help: %v\n%s", err, help)
	}
	top, _ := exec.Command("go", "run", "../../cmd/exewall", "--help").CombinedOutput()
	for _, c := range append(o.ds.Spec.Template.Spec.Containers[0].Command[1:],
		o.ds.Spec.Template.Spec.Containers[0].ReadinessProbe.Exec.Command[1:]...) {
		name, _, _ := strings.Cut(c, "=")
		if !strings.HasPrefix(name, "--") {
			continue
		}
		if !bytes.Contains(help, []byte(name+" ")) && !bytes.Contains(top, []byte(name+" ")) {
			t.Errorf("exewall takes no flag %s", name)
		}
	}
}
