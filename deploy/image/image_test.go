package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const root = "../.."

// build builds the image of this checkout into a fresh directory.
func build(t *testing.T) *Result {
	t.Helper()
	r, err := Build(Options{OutDir: t.TempDir(), RepoRoot: root, Arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestImage(t *testing.T) {
	r := build(t)
	t.Logf("%s: %d bytes (layer %d compressed, %d unpacked)", r.Digest, r.Size, r.LayerSize, r.UnpackedSize)

	// The layout holds exactly this image, under its name.
	idx, err := layout.ImageIndexFromPath(r.Layout)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != r.Digest ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != r.Ref {
		t.Fatalf("layout index %+v, want one manifest %s named %s", im.Manifests, r.Digest, r.Ref)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	epoch := commitTime(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Time.Equal(epoch) {
		t.Errorf("config os %s arch %s created %v, want linux %s %v", cf.OS, cf.Architecture, cf.Created, runtime.GOARCH, epoch)
	}
	c := cf.Config
	if strings.Join(c.Entrypoint, " ") != BinPath || strings.Join(c.Cmd, " ") != "daemon" || c.User != "0:0" {
		t.Errorf("entrypoint %q cmd %q user %q", c.Entrypoint, c.Cmd, c.User)
	}
	head, _ := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  r.Version,
		"org.opencontainers.image.revision": strings.TrimSpace(string(head)),
		"org.opencontainers.image.source":   DefaultSource,
		"org.opencontainers.image.created":  epoch.Format(time.RFC3339),
		"org.opencontainers.image.title":    "exewall",
	} {
		if got := c.Labels[k]; got != want || want == "" {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(epoch) {
			t.Errorf("history entry dated %v, want %v", h.Created, epoch)
		}
	}

	// One layer: the binary and its directories; no shell, no package
	// manager, nothing writable but by root.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	var bin []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		if h.Mode&0o7022 != 0 {
			t.Errorf("%s mode %o: writable by others, or setuid/setgid/sticky", h.Name, h.Mode)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s dated %v, want the commit time %v", h.Name, h.ModTime, epoch)
		}
		if h.Name == strings.TrimPrefix(BinPath, "/") {
			if bin, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, want := strings.Join(names, " "), "usr/ usr/bin/ usr/bin/exewall"; got != want {
		t.Errorf("image files %q, want only %q (no shell, no package manager)", got, want)
	}

	// A static binary (no interpreter, no shared libraries) that says its version.
	path := filepath.Join(t.TempDir(), "exewall")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	f.Close()
	if runtime.GOOS == "linux" {
		out, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), r.Version) {
			t.Errorf("exewall --version: %q %v, want version %s (is %s still the version variable?)", out, err, r.Version, versionVar)
		}
	}

	// The archive is the layout, byte for byte.
	checkArchive(t, r)

	// Building again gives the same bytes.
	again := build(t)
	if again.Digest != r.Digest {
		t.Errorf("second build: digest %s, first %s", again.Digest, r.Digest)
	}
	a, _ := os.ReadFile(r.Archive)
	b, _ := os.ReadFile(again.Archive)
	if !bytes.Equal(a, b) {
		t.Error("two builds wrote different archives")
	}

	// Push to a registry and read it back by digest, tagged with the version.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/exewall"
	pushed, err := Push(r, repo)
	if err != nil {
		t.Fatal(err)
	}
	if pushed != repo+"@"+r.Digest {
		t.Errorf("pushed %s, want %s@%s", pushed, repo, r.Digest)
	}
	tag, _ := name.NewTag(repo + ":" + r.Version)
	desc, err := remote.Head(tag)
	if err != nil || desc.Digest.String() != r.Digest {
		t.Errorf("registry has %s as %v (%v), want %s", tag, desc, err, r.Digest)
	}
}

// checkArchive reads the tar beside the layout: the same files, same bytes.
func checkArchive(t *testing.T, r *Result) {
	t.Helper()
	f, err := os.Open(r.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		files++
		got, _ := io.ReadAll(tr)
		want, err := os.ReadFile(filepath.Join(r.Layout, h.Name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("archive's %s differs from the layout's (%v)", h.Name, err)
		}
	}
	// oci-layout, index.json, manifest, config, layer.
	if files != 5 {
		t.Errorf("archive holds %d files, want 5", files)
	}
	if _, err := layout.FromPath(r.Layout); err != nil {
		t.Error(err)
	}
	h, _ := v1.NewHash(r.Digest)
	if _, err := os.Stat(filepath.Join(r.Layout, "blobs", h.Algorithm, h.Hex)); err != nil {
		t.Errorf("manifest blob: %v", err)
	}
}

func commitTime(t *testing.T) time.Time {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%cI", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := time.Parse(time.RFC3339, strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC()
}

func TestPin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kustomization.yaml")
	old := "sha256:" + strings.Repeat("0", 64)
	src := "# top\nimages:\n  - name: exewall\n    newName: registry.example.com/exewall\n    digest: " + old + " # pinned\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d := "sha256:" + strings.Repeat("ab", 32)
	if err := Pin(path, d, "make image at abc"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := strings.Replace(src, old+" # pinned", d+" # make image at abc", 1); string(got) != want {
		t.Errorf("pinned file:\n%s\nwant:\n%s", got, want)
	}
	if err := Pin(path, "latest", ""); err == nil {
		t.Error("Pin accepted a tag as a digest")
	}
	os.WriteFile(path, []byte("images: []\n"), 0o644)
	if err := Pin(path, d, ""); err == nil {
		t.Error("Pin accepted a file without a digest: line")
	}
}
