// Command image builds exewall's OCI container image without a container
// engine (go-containerregistry):
//
//	go run ./deploy/image [-out DIR] [-version V] [-arch A] [-source URL] [-json]
//	                      [-push REF] [-pin FILE]
//
// The image is one layer on an empty base: the static exewall binary
// (CGO_ENABLED=0, -trimpath, no VCS stamp, no build id) at /usr/bin/exewall
// and its two directories, owned by root and writable by nobody else (the
// runtime makes the DaemonSet's mount points). There is no shell, no libc
// and no package manager.
// Its config runs /usr/bin/exewall daemon as uid 0 (loading eBPF programs
// needs it) and carries the org.opencontainers.image.* labels: version,
// revision, source, created.
//
// It is reproducible: every timestamp (file mtimes, the config's created,
// the history) is SOURCE_DATE_EPOCH, by default the commit time of HEAD, so
// two clean clones of one commit give the same digest whatever their paths
// and Go caches (deploy/image's TestReproducibleFromCleanClones checks it).
//
// It writes DIR/oci (an OCI image layout) and DIR/exewall-oci.tar (the same
// layout as one tar, which `podman load -i`, `skopeo copy oci-archive:` and
// `crane push` read) and prints the manifest digest. -push copies the image
// to a registry (credentials from ~/.docker/config.json, as docker and
// crane use them); -pin rewrites the digest of a kustomization's images:
// entry (deploy/kubernetes/kustomization.yaml).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
)

func main() {
	var o Options
	var asJSON bool
	var push, pin string
	flag.StringVar(&o.OutDir, "out", "bin/image", "directory for the OCI layout (oci/) and its tar (exewall-oci.tar)")
	flag.StringVar(&o.Version, "version", "", "version label and tag (default: git describe of HEAD)")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the image")
	flag.StringVar(&o.Source, "source", DefaultSource, "org.opencontainers.image.source label")
	flag.StringVar(&o.RepoRoot, "root", ".", "the repository's root")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	flag.StringVar(&push, "push", "", "also push the image to this registry reference (registry.example.com/exewall[:tag])")
	flag.StringVar(&pin, "pin", "", "also write the image's digest into this kustomization.yaml's images: entry")
	flag.Parse()
	if flag.NArg() != 0 {
		fail(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}
	r, err := Build(o)
	if err != nil {
		fail(err)
	}
	if push != "" {
		if r.Pushed, err = Push(r, push); err != nil {
			fail(err)
		}
	}
	if pin != "" {
		if err := Pin(pin, r.Digest, "make image at "+r.Revision+" (exewall "+r.Version+")"); err != nil {
			fail(err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return
	}
	fmt.Printf("image %s (exewall %s, %s, built %s)\n", r.Digest, r.Version, r.Platform, r.Created)
	fmt.Printf("  layout  %s\n  archive %s\n", r.Layout, r.Archive)
	fmt.Printf("  size    %d bytes compressed (layer %d), %d bytes unpacked\n", r.Size, r.LayerSize, r.UnpackedSize)
	fmt.Printf("  id      %s (podman/docker image ID: the config digest)\n", r.ConfigDigest)
	if r.Pushed != "" {
		fmt.Printf("  pushed  %s\n", r.Pushed)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
