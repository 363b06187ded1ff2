package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultSource is the org.opencontainers.image.source label.
const DefaultSource = "https://github.com/exewall/exewall"

// BinPath is where the image holds the binary (the DaemonSet's command).
const BinPath = "/usr/bin/exewall"

// versionVar is the variable the build sets to the image's version.
const versionVar = "github.com/exewall/exewall/cmd/exewall/internal/app.Version"

// ArchiveName is the tar of the OCI layout, in Options.OutDir.
const ArchiveName = "exewall-oci.tar"

// Options says what to build.
type Options struct {
	OutDir, Version, Arch, Source, RepoRoot string
	// Env is added to the environment of `go build` (GOCACHE=...).
	Env []string
}

// Result describes the image written.
type Result struct {
	Digest       string `json:"digest"`        // manifest digest: what a registry and kustomize's digest: name
	ConfigDigest string `json:"config_digest"` // the image ID podman and docker show
	Ref          string `json:"ref"`           // the name the layout gives the image (podman load: localhost/exewall:VERSION)
	Version      string `json:"version"`
	Revision     string `json:"revision,omitempty"`
	Created      string `json:"created"`
	Platform     string `json:"platform"`
	Layout       string `json:"layout"`
	Archive      string `json:"archive"`
	Size         int64  `json:"size"` // manifest + config + compressed layer
	LayerSize    int64  `json:"layer_size"`
	UnpackedSize int64  `json:"unpacked_size"` // the layer's tar
	Pushed       string `json:"pushed,omitempty"`

	image v1.Image
}

// Build compiles exewall and writes its image to o.OutDir.
func Build(o Options) (*Result, error) {
	if o.RepoRoot == "" {
		o.RepoRoot = "."
	}
	if o.OutDir == "" {
		o.OutDir = "bin/image"
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.Source == "" {
		o.Source = DefaultSource
	}
	epoch, revision, err := sourceDate(o.RepoRoot)
	if err != nil {
		return nil, err
	}
	if o.Version == "" {
		if o.Version, err = gitVersion(o.RepoRoot); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "exewall-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "exewall")
	if err := goBuild(o, bin); err != nil {
		return nil, err
	}
	layerTar, err := layerTar(bin, epoch)
	if err != nil {
		return nil, err
	}
	img, err := assemble(o, layerTar, epoch, revision)
	if err != nil {
		return nil, err
	}
	r := &Result{Ref: "exewall:" + o.Version, Version: o.Version, Revision: revision, Created: epoch.Format(time.RFC3339),
		Platform: "linux/" + o.Arch, UnpackedSize: int64(len(layerTar)), image: img}
	if err := r.describe(); err != nil {
		return nil, err
	}
	if err := r.write(o.OutDir, epoch); err != nil {
		return nil, err
	}
	return r, nil
}

// sourceDate is SOURCE_DATE_EPOCH when set, else HEAD's commit time, and
// HEAD's commit hash when there is a git checkout.
func sourceDate(root string) (time.Time, string, error) {
	revision := ""
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		revision = strings.TrimSpace(string(out))
	}
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct", "HEAD").Output()
		if err != nil {
			return time.Time{}, "", fmt.Errorf("no SOURCE_DATE_EPOCH and no git commit in %s: %w", root, err)
		}
		s = strings.TrimSpace(string(out))
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, "", fmt.Errorf("SOURCE_DATE_EPOCH %q is not a count of seconds", s)
	}
	return time.Unix(sec, 0).UTC(), revision, nil
}

// gitVersion is `git describe` of HEAD without the leading v (v1.2.3-4-gabc
// -> 1.2.3-4-gabc; a commit hash where there is no tag), -dirty when the
// work tree has changes. It is also the image's tag, so it has only the
// characters a tag may have.
func gitVersion(root string) (string, error) {
	out, err := exec.Command("git", "-C", root, "describe", "--tags", "--match", "v[0-9]*",
		"--always", "--abbrev=12", "--dirty").Output()
	if err != nil {
		return "", fmt.Errorf("git describe in %s (or give -version): %w", root, err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), nil
}

// goBuild compiles a static, path-free, stamp-free exewall.
func goBuild(o Options, out string) error {
	ldflags := "-s -w -buildid= -X " + versionVar + "=" + o.Version
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/exewall")
	cmd.Dir = o.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch,
		// The default microarchitecture levels, whatever the caller's environment says.
		"GOAMD64=v1", "GOARM64=v8.0", "GOARM=7", "GO386=sse2")
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build exewall: %w", err)
	}
	return nil
}

// layerTar is the image's only layer: /usr/bin/exewall and its parent
// directories, owned by root, mode 0755, dated epoch.
func layerTar(bin string, epoch time.Time) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR})
	}
	if err := dir("usr/"); err != nil {
		return nil, err
	}
	if err := dir("usr/bin/"); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(BinPath, "/"), Mode: 0o755,
		Size: int64(len(data)), ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// assemble puts the layer on an empty base with exewall's config.
func assemble(o Options, layerTar []byte, epoch time.Time, revision string) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: epoch}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   created,
		CreatedBy: "go run ./deploy/image (exewall " + o.Version + ")",
		Comment:   "the static exewall binary at " + BinPath,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	labels := map[string]string{
		"org.opencontainers.image.title":       "exewall",
		"org.opencontainers.image.description": "per-executable network firewall (eBPF): the daemon and CLI",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.url":         o.Source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     epoch.Format(time.RFC3339),
	}
	if revision != "" {
		labels["org.opencontainers.image.revision"] = revision
	}
	cf.Config = v1.Config{
		Entrypoint: []string{BinPath},
		Cmd:        []string{"daemon"},
		Env:        []string{"PATH=/usr/bin"},
		// Loading and attaching eBPF programs needs root in a privileged
		// container; the files are root's and writable by nobody else.
		User:       "0:0",
		WorkingDir: "/",
		StopSignal: "SIGTERM",
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	return img, nil
}

func (r *Result) describe() error {
	d, err := r.image.Digest()
	if err != nil {
		return err
	}
	cd, err := r.image.ConfigName()
	if err != nil {
		return err
	}
	m, err := r.image.Manifest()
	if err != nil {
		return err
	}
	r.Digest, r.ConfigDigest = d.String(), cd.String()
	raw, err := r.image.RawManifest()
	if err != nil {
		return err
	}
	r.Size = int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		r.Size += l.Size
		r.LayerSize += l.Size
	}
	return nil
}

// write replaces outDir/oci with the image's layout and writes the layout's
// tar beside it.
func (r *Result) write(outDir string, epoch time.Time) error {
	r.Layout = filepath.Join(outDir, "oci")
	r.Archive = filepath.Join(outDir, ArchiveName)
	if err := os.RemoveAll(r.Layout); err != nil {
		return err
	}
	p, err := layout.Write(r.Layout, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", r.Layout, err)
	}
	if err := p.AppendImage(r.image, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": r.Ref,
	})); err != nil {
		return fmt.Errorf("write %s: %w", r.Layout, err)
	}
	return tarDir(r.Layout, r.Archive, epoch)
}

// tarDir writes dir's tree to out in name order, with fixed owners, modes
// and times, so the archive depends on the image only.
func tarDir(dir, out string, epoch time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a file or directory", path)
		}
		names = append(names, path)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, path := range names {
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		fi, err := os.Stat(path)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		h := &tar.Header{Name: rel, Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg, Size: fi.Size(), Format: tar.FormatUSTAR}
		if fi.IsDir() {
			h = &tar.Header{Name: rel + "/", Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatUSTAR}
		}
		if err := tw.WriteHeader(h); err != nil {
			return errors.Join(err, f.Close())
		}
		if fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		if _, err := tw.Write(data); err != nil {
			return errors.Join(err, f.Close())
		}
	}
	if err := tw.Close(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}
